"""Numba CPU kernels: fused, multi-threaded drop-ins for minilm's plain-NumPy reference ops.

Every kernel takes and returns plain float32 NumPy arrays (non-contiguous inputs are copied;
float64 raises TypeError -- float64 work such as gradient checks belongs to the reference ops):

    attention_forward(q, k, v, *, causal=False, key_mask=None, scale=None) -> (out, lse)
    attention_backward(q, k, v, out, lse, dout, *, causal=False, key_mask=None, scale=None) -> (dq, dk, dv)
    gelu_forward(x, approximate="none") -> y                  approximate: "none" (erf) or "tanh"
    gelu_backward(x, dy, approximate="none") -> dx
    layer_norm_forward(x, weight, bias, eps=1e-5) -> (y, mean, rstd)
    layer_norm_backward(dy, x, weight, mean, rstd) -> (dx, dweight, dbias)
    cross_entropy_forward(logits, targets, *, ignore_index=-100) -> (loss_sum, n_counted, lse)
    cross_entropy_backward(logits, targets, lse, grad_scale, *, ignore_index=-100) -> dlogits

`KERNELS` maps those names to the functions (for a backend registry).

Attention is also kept as a ladder of versions with the same two signatures, each checked
against the float64 reference in tests/test_kernel_ladder.py and timed side by side by
benchmarks/bench_kernels.py.  `ATTENTION_VERSIONS[name] = (attention_forward, attention_backward)`:

    "v1_rows"    attention_v1_rows.py    the plain port: one query row at a time, the full softmax
    "v2_online"  attention_v2_online.py  one pass over the keys with the online softmax
    "v3_tiles"   attention.py (+ attention_blocks.py)  64 x 64 tiles, register blocking, log2 domain
    "v4_blas"    attention_v4_blas.py    the products by BLAS GEMMs, the softmax and its gradient fused
                                         in Numba between them (Tq x Tk scores per call: not for long contexts)

KERNELS uses the fastest, v4 (measured: benchmarks/results/kernel_ladder.txt; v3 before v4 existed).  Importing this package
compiles nothing; each kernel compiles on its first call (about a second, or tens of milliseconds
when Numba's on-disk cache already holds it).  `warmup()` compiles them all on tiny inputs.
`poisoned_outputs()` is a debugging aid: outputs allocated inside it start as NaN, so an element a
kernel forgot to write shows up.  Threads: numba.set_num_threads / NUMBA_NUM_THREADS.
"""
import numpy as np

from ._alloc import poisoned_outputs
from . import attention_v1_rows, attention_v2_online
from .attention import attention_backward as attention_v3_backward
from .attention import attention_forward as attention_v3_forward
from .attention_v4_blas import attention_backward, attention_forward
from .cross_entropy import cross_entropy_backward, cross_entropy_forward
from .gelu import gelu_backward, gelu_forward
from .layer_norm import layer_norm_backward, layer_norm_forward

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

ATTENTION_VERSIONS = {
    "v1_rows": (attention_v1_rows.attention_forward, attention_v1_rows.attention_backward),
    "v2_online": (attention_v2_online.attention_forward, attention_v2_online.attention_backward),
    "v3_tiles": (attention_v3_forward, attention_v3_backward),
    "v4_blas": (attention_forward, attention_backward),
}

__all__ = sorted(KERNELS) + ["ATTENTION_VERSIONS", "KERNELS", "poisoned_outputs", "warmup"]


def warmup():
    """Compile (or load from the cache) every kernel once, on tiny inputs; returns the names warmed up."""
    rng = np.random.default_rng(0)
    for Tq, Tk in ((3, 3), (9, 9), (1, 1 << 14)):  # row path (serial), tiles, row path (parallel)
        q, dout = (rng.standard_normal((1, 1, Tq, 64), dtype=np.float32) for _ in range(2))
        k, v = (rng.standard_normal((1, 1, Tk, 64), dtype=np.float32) for _ in range(2))
        mask = rng.random((1, Tk)) < 0.9
        out, lse = attention_forward(q, k, v, causal=True, key_mask=mask)
    attention_backward(q, k, v, out, lse, dout, causal=True, key_mask=mask)
    x = rng.standard_normal((2, 5), dtype=np.float32)
    for form in ("none", "tanh"):
        gelu_backward(x, gelu_forward(x, form), form)
    w = np.ones(5, np.float32)
    y, mean, rstd = layer_norm_forward(x, w, np.zeros(5, np.float32))
    layer_norm_backward(y, x, w, mean, rstd)
    targets = np.array([1, -100])
    loss_sum, n_counted, lse = cross_entropy_forward(x, targets)
    cross_entropy_backward(x, targets, lse, 1.0 / max(n_counted, 1))
    return sorted(KERNELS)
