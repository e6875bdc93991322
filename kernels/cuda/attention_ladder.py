"""The three versions of CUDA attention, side by side, with the same two signatures.

    v1_rows    attention_v1.cu   one warp per query row, full softmax, P and dS in global scratch
    v2_online  attention_v2.cu   one warp per query row, online softmax, nothing of size Tk stored
    v3_tiles   attention_forward.cu + attention_backward.cu   16 rows per block share K/V tiles
               in shared memory (attention.py; what the backend uses)

`VERSIONS_ON[name] = (forward_on, backward_on)` take a runtime first (the tests pass the CPU
emulator of tests/cuda_emu); `ATTENTION_VERSIONS[name] = (forward, backward)` run on the GPU
through CuPy, exactly like minilm.kernels.cuda.attention_forward / attention_backward:

    forward(q, k, v, *, causal=False, key_mask=None, scale=None) -> (out, lse)
    backward(q, k, v, out, lse, dout, *, causal=False, key_mask=None, scale=None) -> (dq, dk, dv)
"""
import numpy as np

from . import attention
from .attention import THREADS, WARPS, _backward_inputs, _inputs
from .runtime import ceil_div, get_runtime

# Versions 1 and 2 give one warp to each row: 4 rows per block of 128 threads.


def _launch_rows(runtime, source, kernel, rows, args):
    runtime.launch(source, kernel, (ceil_div(rows, WARPS), 1, 1), (THREADS, 1, 1), args)


def v1_forward_on(runtime, q, k, v, *, causal=False, key_mask=None, scale=None):
    q, k, v, mask, sizes = _inputs(runtime, "attention_forward", q, k, v, causal, key_mask, scale)
    b, h, tq, d = q.shape
    tk = k.shape[2]
    probs = runtime.empty((b, h, tq, tk))  # the (Tq, Tk) matrix that versions 2 and 3 never store
    out = runtime.empty((b, h, tq, d))
    lse = runtime.empty((b, h, tq))
    rows = b * h * tq
    _launch_rows(runtime, "attention_v1.cu", "attention_v1_forward_kernel", rows,
                 (q, k, v, mask, probs, out, lse, np.int64(rows)) + sizes)
    return out, lse


def v1_backward_on(runtime, q, k, v, out, lse, dout, *, causal=False, key_mask=None, scale=None):
    op = "attention_backward"
    q, k, v, mask, sizes = _inputs(runtime, op, q, k, v, causal, key_mask, scale)
    out, lse, dout = _backward_inputs(runtime, op, q, out, lse, dout)
    b, h, tq, d = q.shape
    tk = k.shape[2]
    _, tq32, tk32, d32, scale32, causal32, _ = sizes
    probs = runtime.empty((b, h, tq, tk))    # P, then read by columns in step 2
    dscores = runtime.empty((b, h, tq, tk))  # dS
    dq = runtime.empty((b, h, tq, d))
    dk = runtime.empty((b, h, tk, d))
    dv = runtime.empty((b, h, tk, d))
    rows, key_rows = b * h * tq, b * h * tk
    _launch_rows(runtime, "attention_v1.cu", "attention_v1_backward_rows_kernel", rows,
                 (q, k, v, dout, lse, mask, probs, dscores, dq, np.int64(rows)) + sizes)
    _launch_rows(runtime, "attention_v1.cu", "attention_v1_backward_cols_kernel", key_rows,
                 (q, dout, probs, dscores, dk, dv, np.int64(key_rows), tq32, tk32, d32, scale32,
                  causal32))
    return dq, dk, dv


def v2_forward_on(runtime, q, k, v, *, causal=False, key_mask=None, scale=None):
    q, k, v, mask, sizes = _inputs(runtime, "attention_forward", q, k, v, causal, key_mask, scale)
    b, h, tq, d = q.shape
    out = runtime.empty((b, h, tq, d))
    lse = runtime.empty((b, h, tq))
    rows = b * h * tq
    _launch_rows(runtime, "attention_v2.cu", "attention_v2_forward_kernel", rows,
                 (q, k, v, mask, out, lse, np.int64(rows)) + sizes)
    return out, lse


def v2_backward_on(runtime, q, k, v, out, lse, dout, *, causal=False, key_mask=None, scale=None):
    op = "attention_backward"
    q, k, v, mask, sizes = _inputs(runtime, op, q, k, v, causal, key_mask, scale)
    out, lse, dout = _backward_inputs(runtime, op, q, out, lse, dout)
    b, h, tq, d = q.shape
    tk = k.shape[2]
    delta = runtime.empty((b, h, tq))  # dO_i . O_i, written by the dq kernel, read by dkdv
    dq = runtime.empty((b, h, tq, d))
    dk = runtime.empty((b, h, tk, d))
    dv = runtime.empty((b, h, tk, d))
    rows, key_rows = b * h * tq, b * h * tk
    _launch_rows(runtime, "attention_v2.cu", "attention_v2_backward_dq_kernel", rows,
                 (q, k, v, out, dout, lse, mask, delta, dq, np.int64(rows)) + sizes)
    _launch_rows(runtime, "attention_v2.cu", "attention_v2_backward_dkdv_kernel", key_rows,
                 (q, k, v, dout, lse, delta, mask, dk, dv, np.int64(key_rows)) + sizes)
    return dq, dk, dv


VERSIONS_ON = {
    "v1_rows": (v1_forward_on, v1_backward_on),
    "v2_online": (v2_forward_on, v2_backward_on),
    "v3_tiles": (attention.attention_forward_on, attention.attention_backward_on),
}


def _on_gpu(name):
    forward_on, backward_on = VERSIONS_ON[name]

    def forward(q, k, v, *, causal=False, key_mask=None, scale=None):
        return forward_on(get_runtime(), q, k, v, causal=causal, key_mask=key_mask, scale=scale)

    def backward(q, k, v, out, lse, dout, *, causal=False, key_mask=None, scale=None):
        return backward_on(get_runtime(), q, k, v, out, lse, dout, causal=causal,
                           key_mask=key_mask, scale=scale)

    forward.__name__, backward.__name__ = f"attention_forward_{name}", f"attention_backward_{name}"
    return forward, backward


ATTENTION_VERSIONS = {name: _on_gpu(name) for name in VERSIONS_ON}
