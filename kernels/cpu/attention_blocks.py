"""Building blocks shared by the attention kernels: input checks, tile loading, and one small matmul loop.

Tiles.  A kernel copies what it works on into small local arrays ("tiles") first: BLOCK_Q query rows,
BLOCK_K keys, and the head dimension D padded with zeros to Dp, a multiple of 4.  Padding rows,
columns and keys are zero, so they add nothing to any dot product.

Every matrix product in the kernels is written as dot products of rows: C[i, j] = sum_l A[i, l] B[j, l]
with A and B both stored so that l runs along a row (contiguous).  Where the natural layout has l
along a column, the kernel keeps a transposed copy of that tile (K^T for dQ = dS K, V^T for
O = P V, and P^T, dS^T, Q^T, dO^T for dV = P^T dO and dK = dS^T Q).

The one micro-kernel, `two_rows_times_rows`, computes C in 2 x 4 blocks: eight running sums over l.
LLVM vectorises the loop over l (8 floats per instruction) and keeps the eight sums in registers,
so each step loads 6 vectors and does 8 multiply-adds, with no stores until the end.  Measured on a
2-core AVX2 machine (one thread) it reaches about 45 GFLOP/s on 64 x 64 tiles, against about 30 for
the textbook form out[i, :] += a[i, l] * b[l, :] that loads and stores the output row every step.
(2 x 4 is what fits the 16 AVX2 registers: 8 sums + 6 loaded vectors.)

Scores live in the log2 domain:  t_ij = (q_i . k_j) * scale * log2(e) + bias_j,  so that
softmax_j = 2**(t_ij - m_i) / l_i and  lse_i (natural) = (m_i + log2 l_i) * ln 2.
bias_j is 0 for a key that may be attended and -inf for padding (key_mask False) and for the
keys past Tk in the last, partial key tile.

Causal masking with Tq queries and Tk keys: query i sees keys j <= i + (Tk - Tq), i.e. in a key tile
starting at j0 only its first  visible_keys(i, j0, n_keys)  keys; the kernels compute scores only
for those (rounded up to a multiple of 4).
"""
import math

import numpy as np
from numba import prange

from . import _alloc, _checks
from ._jit import REDUCE, helper, kernel

F32 = np.float32
BLOCK_Q = 64  # query rows per tile (even)
BLOCK_K = 64  # keys per tile (a multiple of 4)
LOG2E = 1.4426950408889634
NEG_INF = F32(-np.inf)
_ZERO = F32(0.0)


def check_attention_inputs(op, q, k, v, key_mask, scale):
    """Validate q (B, H, Tq, D), k and v (B, H, Tk, D), key_mask (B, Tk) bool; return arrays, bias, scale."""
    q = _checks.float32_array(op, "q", q, ndim=4)
    k = _checks.float32_array(op, "k", k, ndim=4)
    v = _checks.float32_array(op, "v", v, ndim=4)
    _checks.same_shape(op, "k", k, "v", v)
    B, H, _, D = q.shape
    if k.shape[0] != B or k.shape[1] != H or k.shape[3] != D:
        raise ValueError("minilm.kernels.cpu.%s: q has shape %s (B, H, Tq, D) but k has shape %s; "
                         "expected (B, H, Tk, D) with the same B, H and D" % (op, q.shape, k.shape))
    if D == 0:
        raise ValueError("minilm.kernels.cpu.%s: head dimension D must be at least 1, got q of shape %s"
                         % (op, q.shape))
    Tk = k.shape[2]
    key_bias = np.zeros((B, Tk), np.float32)  # (B, Tk): 0 = real key, -inf = padding
    if key_mask is not None:
        mask = np.asarray(key_mask)
        if mask.dtype != np.bool_ or mask.shape != (B, Tk):
            raise ValueError("minilm.kernels.cpu.%s: key_mask must be a bool array of shape (B, Tk) = %s, got %s %s"
                             % (op, (B, Tk), mask.dtype, mask.shape))
        key_bias[~mask] = NEG_INF
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError("minilm.kernels.cpu.%s: scale must be finite, got %r" % (op, scale))
    return q, k, v, key_bias, scale


def check_backward_inputs(op, q, out, lse, dout):
    """Validate the backward pass's extra inputs against q: out and dout (B, H, Tq, D), lse (B, H, Tq)."""
    out = _checks.float32_array(op, "out", out)
    dout = _checks.float32_array(op, "dout", dout)
    lse = _checks.float32_array(op, "lse", lse)
    _checks.same_shape(op, "q", q, "out", out)
    _checks.same_shape(op, "q", q, "dout", dout)
    if lse.shape != q.shape[:3]:
        raise ValueError("minilm.kernels.cpu.%s: lse must have shape (B, H, Tq) = %s, got %s"
                         % (op, q.shape[:3], lse.shape))
    return out, lse, dout


def padded_dim(D):
    """D rounded up to a multiple of 4."""
    return (D + 3) // 4 * 4


@helper()
def round_up(n, multiple):
    """n rounded up to a multiple of `multiple`."""
    return (n + multiple - 1) // multiple * multiple


@helper()
def visible_keys(i, j0, n_keys, causal, offset):
    """How many of the keys j0 .. j0+n_keys-1 query row i may see (all of them unless causal)."""
    if not causal:
        return n_keys
    return max(0, min(n_keys, i + offset + 1 - j0))


@helper(REDUCE)
def load_rows(src, b, h, row0, n, factor, tile):
    """tile[r, :D] = factor * src[b, h, row0 + r, :] for r < n; every other element of tile = 0.

    (n, D) -> (rows, Dp) zero-padded tile.  (Unsigned loop counters: see two_rows_times_rows.)
    """
    D = np.uint64(src.shape[3])
    first = np.uint64(row0)
    for r in range(np.uint64(n)):
        for d in range(D):
            tile[r, d] = src[b, h, first + r, d] * factor
        for d in range(D, np.uint64(tile.shape[1])):
            tile[r, d] = _ZERO
    for r in range(np.uint64(n), np.uint64(tile.shape[0])):
        for d in range(np.uint64(tile.shape[1])):
            tile[r, d] = _ZERO


@helper(REDUCE)
def load_columns(src, b, h, row0, n, tile):
    """tile[d, j] = src[b, h, row0 + j, d] for j < n, zero elsewhere: (n, D) -> (Dp, cols) transposed tile.

    Four source rows at a time, each read contiguously: measured 2.5x faster than one element at a
    time with signed indices.
    """
    D = np.uint64(src.shape[3])
    first = np.uint64(row0)
    n4 = np.uint64(n // 4 * 4)
    for j in range(0, n4, 4):
        for d in range(D):
            tile[d, j] = src[b, h, first + j, d]
            tile[d, j + 1] = src[b, h, first + j + 1, d]
            tile[d, j + 2] = src[b, h, first + j + 2, d]
            tile[d, j + 3] = src[b, h, first + j + 3, d]
    for j in range(n4, np.uint64(n)):
        for d in range(D):
            tile[d, j] = src[b, h, first + j, d]
    for d in range(D):
        for j in range(np.uint64(n), np.uint64(tile.shape[1])):
            tile[d, j] = _ZERO
    for d in range(D, np.uint64(tile.shape[0])):
        for j in range(np.uint64(tile.shape[1])):
            tile[d, j] = _ZERO


@kernel(parallel=True)
def _tile_keys_kernel(x, rows, cols):
    B, H, Tk, D = x.shape
    n_kblocks = (Tk + BLOCK_K - 1) // BLOCK_K
    for task in prange(B * H * n_kblocks):
        jb = task % n_kblocks
        b = task // n_kblocks // H
        h = task // n_kblocks % H
        j0 = jb * BLOCK_K
        nk = min(BLOCK_K, Tk - j0)
        if rows.size > 0:
            load_rows(x, b, h, j0, nk, F32(1.0), rows[b, h, j0:j0 + BLOCK_K])
        if cols.size > 0:
            load_columns(x, b, h, j0, nk, cols[b, h, jb])


def tile_keys(x, want_rows, want_columns):
    """Key-side operands for every head at once (one parallel pass), so no task reloads them.

    x (B, H, Tk, D) -> rows (B, H, Tkp, Dp): x zero-padded to whole tiles (Tkp = Tk rounded up to
    BLOCK_K) and D rounded up to Dp; columns (B, H, Tkp / BLOCK_K, Dp, BLOCK_K): each tile of
    BLOCK_K keys transposed.  Either can be skipped (returned as an empty array).
    """
    B, H, Tk, D = x.shape
    n_kblocks = (Tk + BLOCK_K - 1) // BLOCK_K
    Dp = padded_dim(D)
    rows = _alloc.empty((B, H, n_kblocks * BLOCK_K, Dp) if want_rows else (0, 0, 0, 0))
    cols = _alloc.empty((B, H, n_kblocks, Dp, BLOCK_K) if want_columns else (0, 0, 0, 0, 0))
    if B * H * n_kblocks:
        _tile_keys_kernel(x, rows, cols)
    return rows, cols


def tile_key_bias(key_bias):
    """(B, Tk) -> (B, Tkp / BLOCK_K, BLOCK_K): the key bias per tile, -inf for padding keys past Tk."""
    B, Tk = key_bias.shape
    n_kblocks = (Tk + BLOCK_K - 1) // BLOCK_K
    tiles = np.full((B, n_kblocks * BLOCK_K), NEG_INF, np.float32)
    tiles[:, :Tk] = key_bias
    return tiles.reshape(B, n_kblocks, BLOCK_K)


@helper(REDUCE)
def two_rows_times_rows(a, i, b, n_cols, lo, hi, out, out_i, accumulate):
    """out[out_i + e, j] (+)= sum_{lo <= l < hi} a[i + e, l] * b[j, l]  for e in (0, 1), j < n_cols.

    a (>= i + 2 rows, >= hi), b (>= n_cols rows, >= hi), rows contiguous; n_cols a multiple of 4.
    The 2 x 4 block for keys j..j+3 is eight running sums over l (see the module docstring); they
    are written as separate local variables on purpose: returning them as a tuple from a helper
    measured 1.5x slower.  The loop over l counts in unsigned integers: with a signed start that
    LLVM cannot prove >= 0, Numba's negative-index wrap-around stays in the loop and blocks
    vectorisation (measured 3x slower).  Callers keep hi - lo a multiple of 8 where they can
    (padding with zeros), so no scalar remainder loop runs.
    """
    start = np.uint64(lo)
    stop = np.uint64(hi)
    for j in range(0, n_cols, 4):
        c00 = _ZERO
        c01 = _ZERO
        c02 = _ZERO
        c03 = _ZERO
        c10 = _ZERO
        c11 = _ZERO
        c12 = _ZERO
        c13 = _ZERO
        for l in range(start, stop):
            x0 = a[i, l]
            x1 = a[i + 1, l]
            y0 = b[j, l]
            y1 = b[j + 1, l]
            y2 = b[j + 2, l]
            y3 = b[j + 3, l]
            c00 += x0 * y0
            c01 += x0 * y1
            c02 += x0 * y2
            c03 += x0 * y3
            c10 += x1 * y0
            c11 += x1 * y1
            c12 += x1 * y2
            c13 += x1 * y3
        if accumulate:
            out[out_i, j] += c00
            out[out_i, j + 1] += c01
            out[out_i, j + 2] += c02
            out[out_i, j + 3] += c03
            out[out_i + 1, j] += c10
            out[out_i + 1, j + 1] += c11
            out[out_i + 1, j + 2] += c12
            out[out_i + 1, j + 3] += c13
        else:
            out[out_i, j] = c00
            out[out_i, j + 1] = c01
            out[out_i, j + 2] = c02
            out[out_i, j + 3] = c03
            out[out_i + 1, j] = c10
            out[out_i + 1, j + 1] = c11
            out[out_i + 1, j + 2] = c12
            out[out_i + 1, j + 3] = c13
