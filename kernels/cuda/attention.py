"""Fused attention on the GPU: attention_forward.cu and attention_backward.cu on CuPy arrays.

    attention_forward(q, k, v, *, causal=False, key_mask=None, scale=None) -> (out, lse)
        q (B, H, Tq, D), k and v (B, H, Tk, D), D in 1..128, float32
        S = scale q k^T (scale defaults to 1/sqrt(D)), P = softmax over the visible keys,
        out = P v (B, H, Tq, D), lse = log sum_j exp(S_ij) over visible keys (B, H, Tq)
        visible: key_mask[b, j] (bool (B, Tk), True = a real key) and, if causal,
        j <= i + (Tk - Tq). A query with no visible key gets out = 0, lse = -inf.
    attention_backward(q, k, v, out, lse, dout, *, causal=False, key_mask=None, scale=None)
        -> (dq, dk, dv), the gradients of sum(out * dout); zero for queries with no visible key.

FlashAttention (Dao et al. 2022) and FlashAttention-2 (Dao 2023): the (Tq, Tk) score matrix is
never stored. Matmuls elsewhere in the model go to cuBLAS through CuPy; only this fused
attention is a hand-written kernel.
"""
import math

import numpy as np

from .runtime import MAX_GRID_Y, ceil_div, float32_input, get_runtime, int32, mask_input
from .sources import ATTENTION_HEAD_DIMS

THREADS = 128     # ATTN_THREADS in attention_common.cuh
WARPS = 4         # ATTN_WARPS
FORWARD_ROWS_PER_WARP = 4   # R in attention_forward_kernel


def rows_per_warp(dmax):
    """attn_rows_per_warp(DMAX) of attention_common.cuh (the backward kernels' R)."""
    return 2 if dmax >= 128 else 4


def head_dim_bucket(d):
    """The DMAX template instance used for head dimension d (32, 64 or 128)."""
    for dmax in ATTENTION_HEAD_DIMS:
        if d <= dmax:
            return dmax
    raise ValueError(f"attention: head dimension {d} is larger than {ATTENTION_HEAD_DIMS[-1]}")


def _inputs(runtime, op, q, k, v, causal, key_mask, scale):
    q = float32_input(runtime, q, op, "q")
    k = float32_input(runtime, k, op, "k")
    v = float32_input(runtime, v, op, "v")
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"{op}: expected (B, H, T, D) arrays, got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    b, h, tq, d = q.shape
    tk = k.shape[2]
    if k.shape != (b, h, tk, d) or v.shape != k.shape:
        raise ValueError(f"{op}: incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)} (need k and v (B, H, Tk, D) with q's B, H, D)")
    if not 1 <= d <= ATTENTION_HEAD_DIMS[-1]:
        raise ValueError(f"{op}: head dimension D = {d} must be in 1..{ATTENTION_HEAD_DIMS[-1]}")
    if key_mask is None:
        mask, has_mask = runtime.contiguous(runtime.xp.ones((1,), dtype=np.uint8)), 0
    else:
        mask, has_mask = mask_input(runtime, key_mask, op, "key_mask"), 1
        if tuple(mask.shape) != (b, tk):
            raise ValueError(f"{op}: key_mask has shape {tuple(mask.shape)}, expected "
                             f"(B, Tk) = ({b}, {tk})")
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    sizes = (int32(h, op, "H"), int32(tq, op, "Tq"), int32(tk, op, "Tk"), int32(d, op, "D"),
             np.float32(scale), np.int32(1 if causal else 0), np.int32(has_mask))
    return q, k, v, mask, sizes


def _backward_inputs(runtime, op, q, out, lse, dout):
    """out and dout (B, H, Tq, D) and lse (B, H, Tq) as contiguous float32, checked against q."""
    out = float32_input(runtime, out, op, "out")
    dout = float32_input(runtime, dout, op, "dout")
    lse = float32_input(runtime, lse, op, "lse")
    for name, a, shape in (("out", out, q.shape), ("dout", dout, q.shape), ("lse", lse, q.shape[:3])):
        if tuple(a.shape) != tuple(shape):
            raise ValueError(f"{op}: {name} has shape {tuple(a.shape)}, expected {tuple(shape)}")
    return out, lse, dout


def _blocks(op, count, rows_per_block):
    blocks = ceil_div(count, rows_per_block)
    if blocks > MAX_GRID_Y:
        raise ValueError(f"{op}: {count} rows need {blocks} blocks along grid y, more than "
                         f"CUDA's {MAX_GRID_Y}")
    return blocks


def attention_forward_on(runtime, q, k, v, *, causal=False, key_mask=None, scale=None):
    op = "attention_forward"
    q, k, v, mask, sizes = _inputs(runtime, op, q, k, v, causal, key_mask, scale)
    b, h, tq, d = q.shape
    dmax = head_dim_bucket(d)
    out = runtime.empty((b, h, tq, d))                                    # (B, H, Tq, D)
    lse = runtime.empty((b, h, tq))                                       # (B, H, Tq)
    grid = (b * h, _blocks(op, tq, WARPS * FORWARD_ROWS_PER_WARP), 1)
    runtime.launch("attention_forward.cu", f"attention_forward_kernel<{dmax}>", grid,
                   (THREADS, 1, 1), (q, k, v, mask, out, lse) + sizes)
    return out, lse


def attention_backward_on(runtime, q, k, v, out, lse, dout, *, causal=False, key_mask=None,
                          scale=None):
    op = "attention_backward"
    q, k, v, mask, sizes = _inputs(runtime, op, q, k, v, causal, key_mask, scale)
    out, lse, dout = _backward_inputs(runtime, op, q, out, lse, dout)
    b, h, tq, d = q.shape
    tk = k.shape[2]
    dmax = head_dim_bucket(d)
    source = "attention_backward.cu"

    delta = runtime.empty((b, h, tq))                                     # (B, H, Tq)
    rows = b * h * tq
    runtime.launch(source, "attention_backward_delta_kernel", (ceil_div(rows, WARPS), 1, 1),
                   (THREADS, 1, 1), (out, dout, delta, np.int64(rows), sizes[3]))

    per_block = WARPS * rows_per_warp(dmax)
    dk = runtime.empty((b, h, tk, d))                                     # (B, H, Tk, D)
    dv = runtime.empty((b, h, tk, d))
    runtime.launch(source, f"attention_backward_dkdv_kernel<{dmax}>",
                   (b * h, _blocks(op, tk, per_block), 1), (THREADS, 1, 1),
                   (q, k, v, dout, lse, delta, mask, dk, dv) + sizes)
    dq = runtime.empty((b, h, tq, d))                                     # (B, H, Tq, D)
    runtime.launch(source, f"attention_backward_dq_kernel<{dmax}>",
                   (b * h, _blocks(op, tq, per_block), 1), (THREADS, 1, 1),
                   (q, k, v, dout, lse, delta, mask, dq) + sizes)
    return dq, dk, dv


def attention_forward(q, k, v, *, causal=False, key_mask=None, scale=None):
    """Fused attention of float32 CuPy arrays (B, H, T, D) -> (out, lse)."""
    return attention_forward_on(get_runtime(), q, k, v, causal=causal, key_mask=key_mask,
                                scale=scale)


def attention_backward(q, k, v, out, lse, dout, *, causal=False, key_mask=None, scale=None):
    """Gradients of fused attention -> (dq, dk, dv), rebuilding P from the forward's lse."""
    return attention_backward_on(get_runtime(), q, k, v, out, lse, dout, causal=causal,
                                 key_mask=key_mask, scale=scale)
