"""Attention, version 4: the matrix products by BLAS, everything between them fused in Numba.

Versions 1-3 compute q.k and p.v inside Numba loops.  Written by hand, those dot products reach
about two thirds of what the machine's BLAS (OpenBLAS, tuned in assembly for each CPU) gets from
the same core, and at head size 64 the products are most of attention's work.  Version 4 splits
the work the other way: every product is one batched GEMM over the (batch x head) matrices, and
Numba does only the element-wise passes that NumPy would spread over several temporary arrays.

Forward, for each of the B*H heads (S is Tq x Tk, scores not yet scaled):
    S = Q K^T                                    BLAS
    P = softmax(scale S + masks), lse per row    Numba: one kernel, three sweeps over a row in cache
    O = P V                                      BLAS
P is dropped after the forward: only lse (B, H, Tq) is kept, as in versions 1-3.

Backward recomputes P from lse (one GEMM more, instead of keeping Tq x Tk per head alive between
forward and backward), and uses FlashAttention-2's delta_i = dout_i . out_i (see version 2):
    S  = Q K^T,   dP = dO V^T                    BLAS
    P_ij = exp(scale S_ij + mask_ij - lse_i),  dS_ij = scale P_ij (dP_ij - delta_i)
                                                 Numba: one kernel, in place
    dV = P^T dO,  dQ = dS K,  dK = dS^T Q        BLAS

Both passes walk the query rows in blocks of 64 (see _row_blocks): the scores of one block are
B*H*64*Tk floats, so memory grows linearly with the context, as in versions 1-3, and causal
attention skips the blocks of keys that no row of a block may see.  Masks and empty rows as in
versions 1-3: a row that sees no key outputs 0, has lse = -inf and passes no gradient.
"""
import math

import numpy as np
from numba import prange

from . import _alloc
from ._jit import kernel
from .approx import exp
from .attention_blocks import NEG_INF, check_attention_inputs, check_backward_inputs, visible_keys

_ZERO = np.float32(0.0)
ROWS_PER_BLOCK = 64       # query rows per GEMM block (see _row_blocks)


@kernel(parallel=True)
def _softmax_rows_kernel(s, key_bias, n_heads, causal, scale, offset, row0, lse):
    """s (BH, R, K) raw scores of query rows row0..row0+R-1 against keys 0..K-1 -> probabilities,
    in place; lse (BH, R) the row log-sum-exp. Query i sits at key position i + offset."""
    BH, R, Tk = s.shape
    for task in prange(BH * R):
        bh, r = task // R, task % R
        b = bh // n_heads
        n = visible_keys(row0 + r, 0, Tk, causal, offset)  # keys j < n are visible
        m = NEG_INF
        for j in range(n):
            t = s[bh, r, j] * scale + key_bias[b, j]
            s[bh, r, j] = t
            m = max(m, t)
        if m == NEG_INF:                              # no visible key: out = 0, no gradient
            for j in range(Tk):
                s[bh, r, j] = _ZERO
            lse[bh, r] = NEG_INF
            continue
        total = _ZERO
        for j in range(n):
            e = exp(s[bh, r, j] - m)                  # vectorisable exp (approx.py); exp(-inf) = 0
            s[bh, r, j] = e
            total += e
        inv = np.float32(1.0) / total
        for j in range(n):
            s[bh, r, j] *= inv
        for j in range(n, Tk):
            s[bh, r, j] = _ZERO
        lse[bh, r] = m + math.log(total)


@kernel(parallel=True)
def _score_grads_kernel(s, dp, key_bias, n_heads, causal, scale, offset, row0, lse, delta):
    """In place, for query rows row0..row0+R-1: s (raw scores) -> P, dp (dO V^T) -> dS = scale P (dP - delta).

    lse and delta are (BH, R), the rows of this block."""
    BH, R, Tk = s.shape
    for task in prange(BH * R):
        bh, r = task // R, task % R
        b = bh // n_heads
        n = visible_keys(row0 + r, 0, Tk, causal, offset)
        row_lse = lse[bh, r]
        if row_lse == NEG_INF:
            n = 0
        for j in range(n):
            p = exp(s[bh, r, j] * scale + key_bias[b, j] - row_lse)
            s[bh, r, j] = p
            dp[bh, r, j] = scale * p * (dp[bh, r, j] - delta[bh, r])
        for j in range(n, Tk):
            s[bh, r, j] = _ZERO
            dp[bh, r, j] = _ZERO


def _row_blocks(Tq, Tk, causal):
    """(first row, end row, keys needed) for each block of ROWS_PER_BLOCK query rows.

    Working on blocks of rows keeps the scores of one call at BH x 64 x Tk floats, never
    BH x Tq x Tk, so long contexts do not need memory quadratic in T. And causal attention lets
    row i see keys j <= i + (Tk - Tq) only, so the block of rows [r0, r1) needs keys
    [0, r1 + Tk - Tq) and the scores right of that are never computed: at T = 256 the GEMMs then
    do 10/16 of the full work.
    """
    blocks = []
    for r0 in range(0, Tq, ROWS_PER_BLOCK):
        r1 = min(Tq, r0 + ROWS_PER_BLOCK)
        blocks.append((r0, r1, max(0, min(Tk, r1 + Tk - Tq)) if causal else Tk))
    return blocks


def attention_forward(q, k, v, *, causal=False, key_mask=None, scale=None):
    """Same contract as version 3: out (B, H, Tq, D) and lse (B, H, Tq) float32."""
    q, k, v, key_bias, scale = check_attention_inputs("attention_forward", q, k, v, key_mask, scale)
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    q3, k3, v3 = q.reshape(B * H, Tq, D), k.reshape(B * H, Tk, D), v.reshape(B * H, Tk, D)
    out = np.zeros((B * H, Tq, D), np.float32)
    lse = _alloc.empty((B * H, Tq))
    for r0, r1, n in _row_blocks(Tq, Tk, causal):
        s = np.matmul(q3[:, r0:r1], k3[:, :n].transpose(0, 2, 1))          # (BH, rows, n): BLAS
        _softmax_rows_kernel(s, key_bias, H, bool(causal), np.float32(scale), Tk - Tq, r0, lse[:, r0:r1])
        if n:
            np.matmul(s, v3[:, :n], out=out[:, r0:r1])                       # O = P V: BLAS
    return out.reshape(B, H, Tq, D), lse.reshape(B, H, Tq)


def attention_backward(q, k, v, out, lse, dout, *, causal=False, key_mask=None, scale=None):
    """Same contract as version 3: (dq, dk, dv) shaped like q, k, v."""
    op = "attention_backward"
    q, k, v, key_bias, scale = check_attention_inputs(op, q, k, v, key_mask, scale)
    out, lse, dout = check_backward_inputs(op, q, out, lse, dout)
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    q3, k3, v3 = q.reshape(B * H, Tq, D), k.reshape(B * H, Tk, D), v.reshape(B * H, Tk, D)
    do3, lse2 = dout.reshape(B * H, Tq, D), lse.reshape(B * H, Tq)
    delta = np.einsum("btd,btd->bt", do3, out.reshape(B * H, Tq, D))      # (BH, Tq): dout_i . out_i
    dq = np.zeros((B * H, Tq, D), np.float32)
    dk = np.zeros((B * H, Tk, D), np.float32)
    dv = np.zeros((B * H, Tk, D), np.float32)
    for r0, r1, n in _row_blocks(Tq, Tk, causal):
        if n == 0:
            continue
        s = np.matmul(q3[:, r0:r1], k3[:, :n].transpose(0, 2, 1))          # recompute the raw scores
        dp = np.matmul(do3[:, r0:r1], v3[:, :n].transpose(0, 2, 1))        # (BH, rows, n)
        _score_grads_kernel(s, dp, key_bias, H, bool(causal), np.float32(scale), Tk - Tq, r0,
                            lse2[:, r0:r1], delta[:, r0:r1])
        dv[:, :n] += np.matmul(s.transpose(0, 2, 1), do3[:, r0:r1])          # P^T dO
        np.matmul(dp, k3[:, :n], out=dq[:, r0:r1])                           # dS K
        dk[:, :n] += np.matmul(dp.transpose(0, 2, 1), q3[:, r0:r1])          # dS^T Q
    return dq.reshape(B, H, Tq, D), dk.reshape(B, H, Tk, D), dv.reshape(B, H, Tk, D)
