"""CUDA kernels for the hot ops of minilm, as CUDA C sources compiled at run time by CuPy.

Each `.cu` file in this folder is one idea, written to be read:

    attention_forward.cu    fused attention, forward (FlashAttention-style online softmax)
    attention_backward.cu   fused attention, backward (dQ, dK, dV from the saved lse)
    attention_v1.cu         attention version 1: one warp per row, full softmax (the plain port)
    attention_v2.cu         attention version 2: one warp per row, online softmax
    gelu.cu                 GELU, exact and tanh forms, forward and backward
    layer_norm.cu           LayerNorm over the last axis, forward and backward
    cross_entropy.cu        softmax + cross-entropy fused, forward and backward
    common.cuh, attention_common.cuh   helpers (warp/block reductions, the mask rule)

The functions below take and return CuPy arrays (float32) and match the NumPy reference ops
and the Numba kernels of `minilm.kernels.cpu`:

    attention_forward(q, k, v, *, causal=False, key_mask=None, scale=None) -> (out, lse)
    attention_backward(q, k, v, out, lse, dout, *, causal=False, key_mask=None, scale=None)
        -> (dq, dk, dv)
    gelu_forward(x, approximate="none") -> y;  gelu_backward(x, dy, approximate) -> dx
    layer_norm_forward(x, weight, bias, eps) -> (y, mean, rstd)
    layer_norm_backward(dy, x, weight, mean, rstd) -> (dx, dweight, dbias)
    cross_entropy_forward(logits, targets, *, ignore_index=-100) -> (loss_sum, n_counted, lse)
    cross_entropy_backward(logits, targets, lse, grad_scale, *, ignore_index=-100) -> dlogits

`ATTENTION_VERSIONS[name] = (forward, backward)` is the attention ladder (attention_ladder.py):
"v1_rows", "v2_online" and "v3_tiles" (the tiled kernels above, the ones KERNELS uses), all with
the attention signatures above.

Matrix multiplications are not here: they go to cuBLAS through CuPy's `@`.

Importing this package needs only NumPy; CuPy is imported on the first kernel call. Each
`.cu` file is compiled once per process (NVRTC, through `cupy.RawModule`) and then cached by
CuPy on disk. `is_available()` says whether CuPy and a GPU are present.
`python -m minilm.kernels.cuda.compile_check` compiles every file without a GPU and prints
registers, shared memory and spills per kernel.
"""
from .attention import attention_backward, attention_forward
from .attention_ladder import ATTENTION_VERSIONS
from .cross_entropy import cross_entropy_backward, cross_entropy_forward
from .gelu import gelu_backward, gelu_forward
from .layer_norm import layer_norm_backward, layer_norm_forward
from .runtime import is_available

KERNELS = {
    "attention_forward": attention_forward,
    "attention_backward": attention_backward,
    "gelu_forward": gelu_forward,
    "gelu_backward": gelu_backward,
    "layer_norm_forward": layer_norm_forward,
    "layer_norm_backward": layer_norm_backward,
    "cross_entropy_forward": cross_entropy_forward,
    "cross_entropy_backward": cross_entropy_backward,
}

__all__ = ["ATTENTION_VERSIONS", "KERNELS", "is_available"] + list(KERNELS)
