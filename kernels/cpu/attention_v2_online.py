"""Attention, version 2 of 3: one pass over the keys with the online softmax.

Version 1 (attention_v1_rows.py) walks the keys three times because the softmax needs the row's
max m and sum l before any weight p_j = exp(s_j - m) / l is known.  The online softmax (Milakov &
Gimelshein 2018, "Online normalizer calculation for softmax") removes that wait: keep a running max
m, a running sum l = sum_j exp(s_j - m) and an unnormalised output acc = sum_j exp(s_j - m) v_j over
the keys seen so far.  When key j brings a new max m' > m, everything summed so far was measured
from the old max, and exp(s - m) = exp(s - m') * exp(m' - m), so multiplying by

    alpha = exp(m - m')        (0 when m was still -inf: nothing had been summed)

corrects l and acc.  Then l += exp(s_j - m'), acc += exp(s_j - m') v_j.  After the last key
out = acc / l and lse = m + log l, exactly what version 1 computes, in one pass and without the row
of Tk scores.  (For random scores the max moves about ln(Tk) times, so the rescaling is rare.)
Version 3 (attention.py) does the same update once per tile of 64 keys instead of once per key.

Backward, also one pass over the keys, thanks to an identity (Dao 2023, "FlashAttention-2"):

    delta_i = sum_j P_ij dP_ij = sum_j P_ij (dout_i . v_j) = dout_i . (sum_j P_ij v_j) = dout_i . out_i

so delta comes from two rows we already have, before the loop, instead of from a first pass over all
keys (version 1's loop that fills p and dp).  Each key j then needs only its own p_j and dp_j:

    p_j = exp(s_j - lse_i),  ds_j = p_j (dout_i . v_j - delta_i),
    dq_i += scale ds_j k_j,  dk_j += scale ds_j q_i,  dv_j += p_j dout_i.

As in version 1, one parallel task per (batch, head) owns that head's dk and dv (no races).
Masks and empty rows: as in version 1 (out = 0, lse = -inf, no gradient).
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
        acc = np.zeros(D, np.float32)  # sum_j exp(s_j - m) v_j over the keys seen so far
        m = NEG_INF  # running max of the scores
        l = _ZERO  # running sum_j exp(s_j - m)
        n = Tk
        if causal:
            n = max(0, min(Tk, i + (Tk - Tq) + 1))
        for j in range(n):
            dot = _ZERO
            for d in range(D):
                dot += q[b, h, i, d] * k[b, h, j, d]
            s = dot * scale + key_bias[b, j]
            if s == NEG_INF:  # a padding key adds exp(-inf) = 0: skip it
                continue
            if s > m:  # a new max: rescale what was summed from the old one
                alpha = math.exp(m - s)  # exp(-inf) = 0 on the first visible key
                l *= alpha
                for d in range(D):
                    acc[d] *= alpha
                m = s
            p = math.exp(s - m)
            l += p
            for d in range(D):
                acc[d] += p * v[b, h, j, d]
        if l == _ZERO:  # no visible key: out = 0, lse = -inf by definition
            for d in range(D):
                out[b, h, i, d] = _ZERO
            lse[b, h, i] = NEG_INF
        else:
            for d in range(D):
                out[b, h, i, d] = acc[d] / l
            lse[b, h, i] = m + math.log(l)


@kernel(parallel=True)
def _backward_kernel(q, k, v, key_bias, causal, scale, out, lse, dout, dq, dk, dv):
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    for bh in prange(B * H):  # one task per head: it alone writes this head's dk and dv
        b, h = bh // H, bh % H
        for j in range(Tk):
            for d in range(D):
                dk[b, h, j, d] = _ZERO
                dv[b, h, j, d] = _ZERO
        for i in range(Tq):
            for d in range(D):
                dq[b, h, i, d] = _ZERO
            if lse[b, h, i] == NEG_INF:  # the row saw no key: no gradient flows through it
                continue
            delta = _ZERO  # dout_i . out_i = sum_j P_ij dP_ij
            for d in range(D):
                delta += dout[b, h, i, d] * out[b, h, i, d]
            n = Tk
            if causal:
                n = max(0, min(Tk, i + (Tk - Tq) + 1))
            for j in range(n):
                dot = _ZERO
                dot_v = _ZERO
                for d in range(D):
                    dot += q[b, h, i, d] * k[b, h, j, d]
                    dot_v += dout[b, h, i, d] * v[b, h, j, d]
                p = math.exp(dot * scale + key_bias[b, j] - lse[b, h, i])  # P_ij, rebuilt from lse
                ds = p * (dot_v - delta) * scale
                for d in range(D):
                    dq[b, h, i, d] += ds * k[b, h, j, d]
                    dk[b, h, j, d] += ds * q[b, h, i, d]
                    dv[b, h, j, d] += p * dout[b, h, i, d]


def attention_forward(q, k, v, *, causal=False, key_mask=None, scale=None):
    """Version 2 forward: q (B, H, Tq, D), k, v (B, H, Tk, D) float32 -> out (B, H, Tq, D), lse (B, H, Tq)."""
    q, k, v, key_bias, scale = check_attention_inputs("attention_forward", q, k, v, key_mask, scale)
    out = _alloc.empty(q.shape)
    lse = _alloc.empty(q.shape[:3])
    _forward_kernel(q, k, v, key_bias, bool(causal), np.float32(scale), out, lse)
    return out, lse


def attention_backward(q, k, v, out, lse, dout, *, causal=False, key_mask=None, scale=None):
    """Version 2 backward from the forward's out and lse -> (dq, dk, dv) shaped like q, k, v."""
    q, k, v, key_bias, scale = check_attention_inputs("attention_backward", q, k, v, key_mask, scale)
    out, lse, dout = check_backward_inputs("attention_backward", q, out, lse, dout)
    dq, dk, dv = _alloc.empty(q.shape), _alloc.empty(k.shape), _alloc.empty(v.shape)
    _backward_kernel(q, k, v, key_bias, bool(causal), np.float32(scale), out, lse, dout, dq, dk, dv)
    return dq, dk, dv
