"""Attention, version 1 of 3: the plain port -- one query row at a time, the whole softmax at once.

This is the NumPy reference written as loops, nothing more.  For one (batch b, head h, query row i):

    s_j   = scale * q_i . k_j              for every key j the row may see
    m     = max_j s_j                      (subtracted before exp so that exp never overflows)
    p_j   = exp(s_j - m) / l,   l = sum_j exp(s_j - m)
    out_i = sum_j p_j v_j,      lse_i = m + log l   (the log-sum-exp, saved for the backward pass)

It takes three passes over the keys (scores and max, exponentials and sum, weighted sum) and keeps
one row of Tk scores in scratch memory.  Rows are independent, so `prange` hands them to threads.
Version 2 (attention_v2_online.py) fuses the three passes into one; version 3 (attention.py) adds tiles.

Backward, the softmax Jacobian written out per row (P is recomputed from the saved lse, not stored):

    p_j  = exp(s_j - lse_i)                dp_j = dout_i . v_j
    delta = sum_j p_j dp_j                 ds_j = p_j (dp_j - delta)      (dS = P * (dP - rowsum(P dP)))
    dq_i  = scale * sum_j ds_j k_j         dk_j += scale * ds_j q_i       dv_j += p_j dout_i

dk_j and dv_j sum over all query rows, so two threads working on rows of the same head would race on
them.  One parallel task per (batch, head) owns that head's dk and dv and walks its rows in order.

Masks: causal lets query i see keys j <= i + (Tk - Tq); key_mask (B, Tk) bool, True = a real key.
A row that sees no key at all gets out = 0, lse = -inf and no gradient.
"""
import math

import numpy as np
from numba import prange

from . import _alloc
from ._jit import kernel
from .attention_blocks import NEG_INF, check_attention_inputs, check_backward_inputs

_ZERO = np.float32(0.0)


@kernel(parallel=True)
def _forward_kernel(q, k, v, key_bias, causal, scale, out, lse):
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    for task in prange(B * H * Tq):  # one task per query row
        b, h, i = task // (H * Tq), (task // Tq) % H, task % Tq
        s = np.empty(Tk, np.float32)  # this row's scores, then its probabilities
        n = Tk  # keys 0 .. n-1 may be visible (causal: only j <= i + Tk - Tq)
        if causal:
            n = max(0, min(Tk, i + (Tk - Tq) + 1))
        # pass 1: scores and their max
        m = NEG_INF
        for j in range(n):
            dot = _ZERO
            for d in range(D):
                dot += q[b, h, i, d] * k[b, h, j, d]
            s[j] = dot * scale + key_bias[b, j]  # key_bias: 0 for a real key, -inf for padding
            m = max(m, s[j])
        for d in range(D):
            out[b, h, i, d] = _ZERO
        if m == NEG_INF:  # no visible key: out = 0, lse = -inf by definition
            lse[b, h, i] = NEG_INF
            continue
        # pass 2: exponentials and their sum (exp(-inf - m) = 0 for padding keys)
        total = _ZERO
        for j in range(n):
            s[j] = math.exp(s[j] - m)
            total += s[j]
        # pass 3: the weighted sum of value rows
        for j in range(n):
            p = s[j] / total
            for d in range(D):
                out[b, h, i, d] += p * v[b, h, j, d]
        lse[b, h, i] = m + math.log(total)


@kernel(parallel=True)
def _backward_kernel(q, k, v, key_bias, causal, scale, lse, dout, dq, dk, dv):
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    for bh in prange(B * H):  # one task per head: it alone writes this head's dk and dv
        b, h = bh // H, bh % H
        p = np.empty(Tk, np.float32)
        dp = np.empty(Tk, np.float32)
        for j in range(Tk):
            for d in range(D):
                dk[b, h, j, d] = _ZERO
                dv[b, h, j, d] = _ZERO
        for i in range(Tq):
            for d in range(D):
                dq[b, h, i, d] = _ZERO
            if lse[b, h, i] == NEG_INF:  # the row saw no key: no gradient flows through it
                continue
            n = Tk
            if causal:
                n = max(0, min(Tk, i + (Tk - Tq) + 1))
            # P and dP of this row, then delta = sum_j P_ij dP_ij
            delta = _ZERO
            for j in range(n):
                dot = _ZERO
                dot_v = _ZERO
                for d in range(D):
                    dot += q[b, h, i, d] * k[b, h, j, d]
                    dot_v += dout[b, h, i, d] * v[b, h, j, d]
                p[j] = math.exp(dot * scale + key_bias[b, j] - lse[b, h, i])
                dp[j] = dot_v
                delta += p[j] * dot_v
            # dS, then the three gradients
            for j in range(n):
                ds = p[j] * (dp[j] - delta) * scale  # scale folded in: dq and dk both need it
                for d in range(D):
                    dq[b, h, i, d] += ds * k[b, h, j, d]
                    dk[b, h, j, d] += ds * q[b, h, i, d]
                    dv[b, h, j, d] += p[j] * dout[b, h, i, d]


def attention_forward(q, k, v, *, causal=False, key_mask=None, scale=None):
    """Version 1 forward: q (B, H, Tq, D), k, v (B, H, Tk, D) float32 -> out (B, H, Tq, D), lse (B, H, Tq)."""
    q, k, v, key_bias, scale = check_attention_inputs("attention_forward", q, k, v, key_mask, scale)
    out = _alloc.empty(q.shape)
    lse = _alloc.empty(q.shape[:3])
    _forward_kernel(q, k, v, key_bias, bool(causal), np.float32(scale), out, lse)
    return out, lse


def attention_backward(q, k, v, out, lse, dout, *, causal=False, key_mask=None, scale=None):
    """Version 1 backward from the forward's lse -> (dq, dk, dv) shaped like q, k, v (out is only checked)."""
    q, k, v, key_bias, scale = check_attention_inputs("attention_backward", q, k, v, key_mask, scale)
    out, lse, dout = check_backward_inputs("attention_backward", q, out, lse, dout)
    dq, dk, dv = _alloc.empty(q.shape), _alloc.empty(k.shape), _alloc.empty(v.shape)
    _backward_kernel(q, k, v, key_bias, bool(causal), np.float32(scale), lse, dout, dq, dk, dv)
    return dq, dk, dv
