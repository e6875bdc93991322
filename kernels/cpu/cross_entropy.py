"""Softmax cross-entropy over a vocabulary, fused with its log-sum-exp, forward and backward.

For logits x (N, V) and integer targets t (N,):
    lse_n = log sum_v exp(x_nv)   (computed as m + log sum_v exp(x_nv - m), m = max_v x_nv)
    loss_n = lse_n - x_{n, t_n}   for counted rows (t_n != ignore_index), 0 for ignored rows
Forward returns loss_sum = sum_n loss_n (accumulated in float64), n_counted and lse; the mean the
engine reports is loss_sum / max(n_counted, 1).
Backward:  dlogits_nv = grad_scale * (exp(x_nv - lse_n) - [v == t_n])  on counted rows, 0 on ignored
rows; the engine passes grad_scale = upstream_grad / n_counted.
A target outside [0, V) that is not ignore_index raises ValueError before any compiled code runs.
"""
import math

import numpy as np
from numba import prange

from . import _alloc, _checks
from ._jit import kernel
from .approx import exp

F32 = np.float32
_ZERO = F32(0.0)
_NEG_INF = F32(-np.inf)


@kernel(parallel=True)
def _cross_entropy_forward_kernel(logits, targets, ignore_index, row_loss, lse):
    N, V = logits.shape
    for n in prange(N):
        m = _NEG_INF
        for v in range(V):
            m = max(m, logits[n, v])
        total = _ZERO
        for v in range(V):
            total += exp(logits[n, v] - m)
        row_lse = m + F32(math.log(total))
        lse[n] = row_lse
        t = targets[n]
        if t == ignore_index:
            row_loss[n] = 0.0
        else:
            row_loss[n] = np.float64(row_lse) - np.float64(logits[n, t])


@kernel(parallel=True)
def _cross_entropy_backward_kernel(logits, targets, lse, grad_scale, ignore_index, dlogits):
    N, V = logits.shape
    for n in prange(N):
        t = targets[n]
        if t == ignore_index:
            for v in range(V):
                dlogits[n, v] = _ZERO
        else:
            row_lse = lse[n]
            for v in range(V):
                dlogits[n, v] = grad_scale * exp(logits[n, v] - row_lse)
            dlogits[n, t] -= grad_scale


def _check_logits_targets(op, logits, targets, ignore_index):
    """(N, V) float32 logits and (N,) int64 targets, each target in [0, V) or equal to ignore_index."""
    logits = _checks.float32_array(op, "logits", logits, ndim=2)
    targets = np.asarray(targets)
    if targets.dtype.kind not in "iu":
        raise TypeError("minilm.kernels.cpu.%s: targets must be an integer array, got %s" % (op, targets.dtype))
    N, V = logits.shape
    if targets.shape != (N,):
        raise ValueError("minilm.kernels.cpu.%s: targets must have shape (N,) = (%d,) for logits of shape %s, got %s"
                         % (op, N, logits.shape, targets.shape))
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= V))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError("minilm.kernels.cpu.%s: target %d at row %d is outside [0, %d) and is not ignore_index=%d "
                         "(%d bad targets in total)" % (op, targets[row], row, V, ignore_index, int(bad.sum())))
    return logits, targets


def cross_entropy_forward(logits, targets, *, ignore_index=-100):
    """Summed softmax cross-entropy.  logits (N, V) float32, targets (N,) int.

    Returns (loss_sum: float, n_counted: int, lse: (N,) float32).  Rows whose target is ignore_index
    add nothing to loss_sum and are not counted (their lse is still computed).
    """
    op = "cross_entropy_forward"
    logits, targets = _check_logits_targets(op, logits, targets, ignore_index)
    N = logits.shape[0]
    row_loss = _alloc.empty((N,), np.float64)
    lse = _alloc.empty((N,))
    _cross_entropy_forward_kernel(logits, targets, np.int64(ignore_index), row_loss, lse)
    n_counted = int(np.count_nonzero(targets != ignore_index))
    return float(row_loss.sum()), n_counted, lse


def cross_entropy_backward(logits, targets, lse, grad_scale, *, ignore_index=-100):
    """dlogits (N, V) = grad_scale * (softmax(logits) - onehot(targets)) on counted rows, 0 on ignored rows."""
    op = "cross_entropy_backward"
    logits, targets = _check_logits_targets(op, logits, targets, ignore_index)
    lse = _checks.float32_array(op, "lse", lse)
    if lse.shape != (logits.shape[0],):
        raise ValueError("minilm.kernels.cpu.%s: lse must have shape (N,) = (%d,), got %s"
                         % (op, logits.shape[0], lse.shape))
    dlogits = _alloc.empty(logits.shape)
    _cross_entropy_backward_kernel(logits, targets, lse, F32(grad_scale), np.int64(ignore_index), dlogits)
    return dlogits
