"""Fused scaled dot-product attention, forward and backward, FlashAttention-style on the CPU.

Version 3 of the attention ladder, the one the backend uses: version 1 (attention_v1_rows.py) is the
plain row-by-row port, version 2 (attention_v2_online.py) adds the online softmax, and this one
adds tiles, register blocking (attention_blocks.py) and exponentials in the log2 domain.

    S = scale * Q K^T (+ masks),  P = softmax(S) row-wise,  O = P V,  lse_i = log sum_j exp(S_ij)

Forward (Dao et al. 2022, "FlashAttention", Algorithm 1; Milakov & Gimelshein 2018, "Online
normalizer calculation for softmax"): each task owns one (batch, head, block of BLOCK_Q query rows)
and walks over the keys in blocks of BLOCK_K, keeping per row a running max m, a running sum
l = sum_j exp(S_ij - m) and an unnormalised accumulator acc = sum_j exp(S_ij - m) v_j.  When a new
block raises the max to m', the old sum and accumulator are rescaled by exp(m - m').  At the end
O_i = acc_i / l_i and lse_i = m_i + log l_i.  Only a BLOCK_Q x BLOCK_K tile of scores ever exists,
never the Tq x Tk matrix.

Backward (Dao 2023, "FlashAttention-2", Algorithm 2): recompute P_ij = exp(S_ij - lse_i) from the
saved lse, then with Delta_i = sum_d dO_id O_id (= sum_j P_ij dP_ij):
    dV = P^T dO,  dP = dO V^T,  dS = P * (dP - Delta),  dQ = scale dS K,  dK = scale dS^T Q.
One task per (batch, head), so dK and dV of a head are accumulated by one thread without races.

Few queries (Tq <= ROWS_PATH_MAX_TQ, e.g. one new token per step when decoding with a KV cache)
take a simpler path, one row at a time, because loading tiles would cost more than the arithmetic.

Masks: `causal` lets query i see keys j <= i + (Tk - Tq) (Tq < Tk covers decoding with a KV cache);
`key_mask` (B, Tk) bool marks real keys True and padding False.  A query row that sees no key at
all gets out = 0, lse = -inf and zero gradients (by definition; no NaN).
"""
import math

import numpy as np
from numba import prange

from . import _alloc
from ._jit import REDUCE, helper, kernel
from .approx import exp2
from .attention_blocks import (
    BLOCK_K,
    BLOCK_Q,
    LOG2E,
    NEG_INF,
    check_attention_inputs,
    check_backward_inputs,
    load_columns,
    load_rows,
    round_up,
    tile_key_bias,
    tile_keys,
    two_rows_times_rows,
    visible_keys,
)

_LN2 = np.float32(math.log(2.0))
_LOG2E = np.float32(LOG2E)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


@helper(REDUCE)
def _online_softmax_row(s, row, n, bias, m, l, acc):
    """One row, one key tile of the online softmax.

    On entry s[row, :] holds q_i . k_j * scale * log2(e).  On exit s[row, j] = 2**(t_ij - m_new) for
    the n visible keys and 0 for the rest of the tile; m[row], l[row] are updated and acc[row] is
    rescaled by alpha = 2**(m_old - m_new) so that it matches the new max.
    """
    block_max = NEG_INF
    for j in range(n):
        t = s[row, j] + bias[j]
        s[row, j] = t
        block_max = max(block_max, t)
    m_new = max(m[row], block_max)
    if m_new == NEG_INF:
        n = 0  # every key seen so far is padding: nothing to add
    else:
        alpha = exp2(m[row] - m_new)  # 0 when m[row] was still -inf
        row_sum = _ZERO
        for j in range(n):
            p = exp2(s[row, j] - m_new)
            s[row, j] = p
            row_sum += p
        l[row] = l[row] * alpha + row_sum
        m[row] = m_new
        if alpha != _ONE:
            for d in range(acc.shape[1]):
                acc[row, d] *= alpha
    for j in range(n, BLOCK_K):
        s[row, j] = _ZERO
    return n


# ---- few query rows (decoding with a KV cache): one row at a time, no tiles ---------------------------
ROWS_PATH_MAX_TQ = 8  # up to this many queries per head, attention_forward uses the row kernels below
ROWS_PARALLEL_MIN_WORK = 1 << 20  # B*H*Tq*Tk*D multiply-adds below which threads cost more than they save


@helper(REDUCE)
def _attend_one_row(q, k, v, key_bias, causal, scale_log2, b, h, i, s, out, lse):
    """out[b, h, i] and lse[b, h, i] for one query row: scores, softmax and P V straight from q, k, v.

    s is scratch of length Tk.  Tiles would cost more than they save for one row: each key is used once.
    """
    D = q.shape[3]
    Tq = q.shape[2]
    Tk = k.shape[2]
    n = Tk
    if causal:
        n = max(0, min(Tk, i + (Tk - Tq) + 1))
    peak = NEG_INF
    for j in range(n):
        dot = _ZERO
        for d in range(D):
            dot += q[b, h, i, d] * k[b, h, j, d]
        t = dot * scale_log2 + key_bias[b, j]
        s[j] = t
        peak = max(peak, t)
    for d in range(D):
        out[b, h, i, d] = _ZERO
    if peak == NEG_INF:  # no visible key
        lse[b, h, i] = NEG_INF
        return
    total = _ZERO
    for j in range(n):
        p = exp2(s[j] - peak)
        s[j] = p
        total += p
    j = 0
    while j + 4 <= n:  # out_i += sum_j p_j v_j, j unrolled by 4
        p0, p1, p2, p3 = s[j], s[j + 1], s[j + 2], s[j + 3]
        for d in range(D):
            out[b, h, i, d] += (p0 * v[b, h, j, d] + p1 * v[b, h, j + 1, d]
                                + p2 * v[b, h, j + 2, d] + p3 * v[b, h, j + 3, d])
        j += 4
    while j < n:
        for d in range(D):
            out[b, h, i, d] += s[j] * v[b, h, j, d]
        j += 1
    inv_total = _ONE / total
    for d in range(D):
        out[b, h, i, d] *= inv_total
    lse[b, h, i] = (peak + np.float32(math.log2(total))) * _LN2


@kernel(parallel=True)
def _attention_rows_parallel_kernel(q, k, v, key_bias, causal, scale_log2, out, lse):
    B, H, Tq, _ = q.shape
    for task in prange(B * H * Tq):
        s = np.empty(k.shape[2], np.float32)
        b, h, i = task // (H * Tq), (task // Tq) % H, task % Tq
        _attend_one_row(q, k, v, key_bias, causal, scale_log2, b, h, i, s, out, lse)


@kernel()
def _attention_rows_serial_kernel(q, k, v, key_bias, causal, scale_log2, out, lse):
    B, H, Tq, _ = q.shape
    s = np.empty(k.shape[2], np.float32)
    for task in range(B * H * Tq):
        b, h, i = task // (H * Tq), (task // Tq) % H, task % Tq
        _attend_one_row(q, k, v, key_bias, causal, scale_log2, b, h, i, s, out, lse)


# ---- the general case: tiles --------------------------------------------------------------------------
@kernel(parallel=True)
def _attention_forward_kernel(q, k_rows, vt, bias, Tk, causal, scale_log2, out, lse):
    B, H, Tq, D = q.shape
    Dp = k_rows.shape[3]
    offset = Tk - Tq
    n_qblocks = (Tq + BLOCK_Q - 1) // BLOCK_Q
    for task in prange(B * H * n_qblocks):
        bh = task // n_qblocks
        b = bh // H
        h = bh % H
        i0 = (task % n_qblocks) * BLOCK_Q
        nq = min(BLOCK_Q, Tq - i0)
        q_tile = np.empty((BLOCK_Q, Dp), np.float32)  # (nq, D) -> (BLOCK_Q, Dp), times scale*log2(e)
        s = np.empty((BLOCK_Q, BLOCK_K), np.float32)  # scores, then 2**(t_ij - m_i)
        acc = np.zeros((BLOCK_Q, Dp), np.float32)  # sum_j 2**(t_ij - m_i) v_j, not yet divided by l_i
        m = np.full(BLOCK_Q, NEG_INF, np.float32)  # running max of t_ij
        l = np.zeros(BLOCK_Q, np.float32)  # running sum_j 2**(t_ij - m_i)
        widths = np.zeros(BLOCK_Q + 1, np.int64)
        load_rows(q, b, h, i0, nq, scale_log2, q_tile)
        key_end = Tk
        if causal:
            key_end = max(0, min(Tk, i0 + nq + offset))  # the tile's last row sees keys < key_end
        for j0 in range(0, key_end, BLOCK_K):
            jb = j0 // BLOCK_K
            nk = min(BLOCK_K, key_end - j0)
            k_tile = k_rows[b, h, j0:j0 + BLOCK_K]  # (BLOCK_K, Dp)
            v_cols = vt[b, h, jb]  # (Dp, BLOCK_K): V^T
            for r in range(nq):
                widths[r] = visible_keys(i0 + r, j0, nk, causal, offset)  # keys row r sees in this tile
            widths[nq] = 0  # the zero padding row that an odd last row is paired with
            # Three passes over the tile, each keeping one operand tile in L1: scores for every pair of
            # rows, the online softmax row by row, then acc += P V for every pair of rows.
            for r in range(0, nq, 2):
                width = round_up(max(widths[r], widths[r + 1]), 4)
                if width > 0:
                    two_rows_times_rows(q_tile, r, k_tile, width, 0, Dp, s, r, False)  # s = q_i . k_j scale log2(e)
            for r in range(nq + nq % 2):
                _online_softmax_row(s, r, widths[r], bias[b, jb], m, l, acc)  # p = 0 past each row's keys
            for r in range(0, nq, 2):
                width = round_up(max(widths[r], widths[r + 1]), 8)
                if width > 0:
                    two_rows_times_rows(s, r, v_cols, Dp, 0, width, acc, r, True)  # acc_i += sum_j p_ij v_j
        for r in range(nq):
            if l[r] > _ZERO:
                inv_l = _ONE / l[r]
                for d in range(D):
                    out[b, h, i0 + r, d] = acc[r, d] * inv_l
                lse[b, h, i0 + r] = (m[r] + np.float32(math.log2(l[r]))) * _LN2
            else:  # no visible key: defined as out = 0, lse = -inf
                for d in range(D):
                    out[b, h, i0 + r, d] = _ZERO
                lse[b, h, i0 + r] = NEG_INF


@helper(REDUCE)
def _probabilities_and_score_grads(p, ds, pt, dst, row, n, bias, scale_log2, lse2, delta, scale):
    """Row `row` of a tile: p = 2**(q.k scale log2e + bias - lse2), ds = scale * p * (dP - delta) for the
    n visible keys, 0 for the rest of the tile; also their transposes pt[j, row], dst[j, row].
    On entry p holds q.k and ds holds dP = dO.v for the visible keys."""
    for j in range(n):
        pij = exp2(p[row, j] * scale_log2 + bias[j] - lse2)
        p[row, j] = pij
        ds[row, j] = pij * (ds[row, j] - delta) * scale
    for j in range(n, BLOCK_K):
        p[row, j] = _ZERO
        ds[row, j] = _ZERO
    for j in range(BLOCK_K):
        pt[j, row] = p[row, j]
        dst[j, row] = ds[row, j]


@kernel(parallel=True)
def _attention_backward_kernel(q, k_rows_all, v_rows_all, kt_all, bias, Tk, out, lse, dout, causal, scale, dq, dk, dv):
    B, H, Tq, D = q.shape
    Dp = k_rows_all.shape[3]
    Tkp = k_rows_all.shape[2]
    offset = Tk - Tq
    scale_log2 = scale * _LOG2E
    for bh in prange(B * H):
        b = bh // H
        h = bh % H
        k_rows = k_rows_all[b, h]  # (Tkp, Dp) zero-padded K
        v_rows = v_rows_all[b, h]  # (Tkp, Dp) zero-padded V
        kt = kt_all[b, h]  # (Tkp / BLOCK_K, Dp, BLOCK_K): tiles of K^T
        dk_acc = np.zeros((Tkp, Dp), np.float32)  # this head's dK, summed over all query tiles
        dv_acc = np.zeros((Tkp, Dp), np.float32)
        q_tile = np.empty((BLOCK_Q, Dp), np.float32)
        qt = np.empty((Dp, BLOCK_Q), np.float32)  # Q^T tile
        do_tile = np.empty((BLOCK_Q, Dp), np.float32)
        dot = np.empty((Dp, BLOCK_Q), np.float32)  # dO^T tile
        dq_tile = np.empty((BLOCK_Q, Dp), np.float32)
        p = np.empty((BLOCK_Q, BLOCK_K), np.float32)  # P tile (recomputed from lse)
        ds = np.empty((BLOCK_Q, BLOCK_K), np.float32)  # dP tile, then scale * dS
        pt = np.empty((BLOCK_K, BLOCK_Q), np.float32)  # P^T
        dst = np.empty((BLOCK_K, BLOCK_Q), np.float32)  # (scale * dS)^T
        delta = np.zeros(BLOCK_Q, np.float32)  # Delta_i = dO_i . O_i
        lse2 = np.full(BLOCK_Q, NEG_INF, np.float32)  # lse_i in log2 units; -inf: no gradient
        for i0 in range(0, Tq, BLOCK_Q):
            nq = min(BLOCK_Q, Tq - i0)
            load_rows(q, b, h, i0, nq, _ONE, q_tile)
            load_columns(q, b, h, i0, nq, qt)
            load_rows(dout, b, h, i0, nq, _ONE, do_tile)
            load_columns(dout, b, h, i0, nq, dot)
            for r in range(BLOCK_Q):
                for d in range(Dp):
                    dq_tile[r, d] = _ZERO
            for r in range(nq):
                acc = _ZERO
                for d in range(D):
                    acc += dout[b, h, i0 + r, d] * out[b, h, i0 + r, d]
                delta[r] = acc
                lse2[r] = lse[b, h, i0 + r] * _LOG2E
            for j in range(BLOCK_K):  # padding rows of a partial query tile: P^T = dS^T = 0 there
                for r in range(nq, BLOCK_Q):
                    pt[j, r] = _ZERO
                    dst[j, r] = _ZERO
            key_end = Tk
            if causal:
                key_end = max(0, min(Tk, i0 + nq + offset))
            for j0 in range(0, key_end, BLOCK_K):
                jb = j0 // BLOCK_K
                nk = min(BLOCK_K, key_end - j0)
                for r in range(0, nq, 2):
                    n0 = 0
                    n1 = 0
                    if lse2[r] != NEG_INF:  # a row with no visible key has no gradient
                        n0 = visible_keys(i0 + r, j0, nk, causal, offset)
                    if r + 1 < nq and lse2[r + 1] != NEG_INF:
                        n1 = visible_keys(i0 + r + 1, j0, nk, causal, offset)
                    width = round_up(max(n0, n1), 4)
                    if width > 0:
                        two_rows_times_rows(q_tile, r, k_rows[j0:j0 + BLOCK_K], width, 0, Dp, p, r, False)  # q_i . k_j
                        two_rows_times_rows(do_tile, r, v_rows[j0:j0 + BLOCK_K], width, 0, Dp, ds, r, False)  # dP_ij
                    _probabilities_and_score_grads(p, ds, pt, dst, r, n0, bias[b, jb], scale_log2, lse2[r], delta[r],
                                                   scale)
                    _probabilities_and_score_grads(p, ds, pt, dst, r + 1, n1, bias[b, jb], scale_log2, lse2[r + 1],
                                                   delta[r + 1], scale)
                    if width > 0:  # dQ_i += sum_j dS_ij k_j  (dS = 0 past each row's keys)
                        two_rows_times_rows(ds, r, kt[jb], Dp, 0, round_up(width, 8), dq_tile, r, True)
                end = round_up(nq, 8)  # P^T and dS^T are 0 in the padding rows of the tile
                for c in range(0, nk, 2):  # key columns in pairs
                    begin = 0
                    if causal:  # earlier rows cannot see key j0 + c (their P and dS are 0): skip most of them
                        begin = max(0, j0 + c - offset - i0) // 8 * 8
                    if begin < nq:
                        two_rows_times_rows(pt, c, dot, Dp, begin, end, dv_acc, j0 + c, True)  # dV_j += P_ij dO_i
                        two_rows_times_rows(dst, c, qt, Dp, begin, end, dk_acc, j0 + c, True)  # dK_j += dS_ij q_i
            for r in range(nq):
                for d in range(D):
                    dq[b, h, i0 + r, d] = dq_tile[r, d]
        for j in range(Tk):
            for d in range(D):
                dk[b, h, j, d] = dk_acc[j, d]
                dv[b, h, j, d] = dv_acc[j, d]


def attention_forward(q, k, v, *, causal=False, key_mask=None, scale=None):
    """Fused attention forward.  q (B, H, Tq, D), k, v (B, H, Tk, D) float32; key_mask (B, Tk) bool or None.

    Returns out (B, H, Tq, D) = softmax(scale q k^T + masks) v and lse (B, H, Tq) float32, the
    log-sum-exp of each row of masked, scaled scores (-inf for a row with no visible key, whose out is 0).
    scale defaults to 1/sqrt(D).
    """
    q, k, v, key_bias, scale = check_attention_inputs("attention_forward", q, k, v, key_mask, scale)
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    out = _alloc.empty((B, H, Tq, D))
    lse = _alloc.empty((B, H, Tq))
    scale_log2 = np.float32(scale * LOG2E)
    if Tq <= ROWS_PATH_MAX_TQ:
        parallel = B * H * Tq * Tk * D >= ROWS_PARALLEL_MIN_WORK
        run = _attention_rows_parallel_kernel if parallel else _attention_rows_serial_kernel
        run(q, k, v, key_bias, bool(causal), scale_log2, out, lse)
    else:
        k_rows, _ = tile_keys(k, True, False)  # (B, H, Tkp, Dp)
        _, vt = tile_keys(v, False, True)  # (B, H, Tkp / BLOCK_K, Dp, BLOCK_K)
        _attention_forward_kernel(q, k_rows, vt, tile_key_bias(key_bias), Tk, bool(causal), scale_log2, out, lse)
    return out, lse


def attention_backward(q, k, v, out, lse, dout, *, causal=False, key_mask=None, scale=None):
    """Fused attention backward from the forward's out and lse; returns (dq, dk, dv) shaped like q, k, v."""
    op = "attention_backward"
    q, k, v, key_bias, scale = check_attention_inputs(op, q, k, v, key_mask, scale)
    out, lse, dout = check_backward_inputs(op, q, out, lse, dout)
    dq = _alloc.empty(q.shape)
    dk = _alloc.empty(k.shape)
    dv = _alloc.empty(v.shape)
    k_rows, kt = tile_keys(k, True, True)
    v_rows, _ = tile_keys(v, True, False)
    _attention_backward_kernel(q, k_rows, v_rows, kt, tile_key_bias(key_bias), k.shape[2], out, lse, dout,
                               bool(causal), np.float32(scale), dq, dk, dv)
    return dq, dk, dv
