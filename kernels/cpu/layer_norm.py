"""Layer normalisation over the last axis, forward and backward (Ba, Kiros & Hinton 2016, "Layer Normalization").

Forward, per row x of length C:
    mean = sum_c x_c / C,   var = sum_c (x_c - mean)^2 / C,   rstd = 1 / sqrt(var + eps)
    xhat = (x - mean) * rstd,   y = xhat * weight + bias
Backward, with g = dy * weight:
    dx = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat))
    dweight = sum over rows of dy * xhat,   dbias = sum over rows of dy
The variance uses two passes (mean first), which stays accurate when |mean| >> std.  Row sums are
float32 (vectorised, reassociated); dweight and dbias are summed over rows in float64 per chunk.
A row whose float32 variance overflows (|x - mean| above ~1e19: LayerNorm is scale-invariant, so
such input is legitimate) is redone in float64, as the NumPy reference does: the output is the
normalised row, never NaN or 0.  Ordinary rows pay one finiteness test.
"""
import numpy as np
from numba import prange

from . import _alloc, _checks
from ._jit import REDUCE, kernel

F32 = np.float32
_ZERO = F32(0.0)
_ONE = F32(1.0)
_CHUNKS = 16  # row chunks for the parallel dweight/dbias partial sums


@kernel(parallel=True)
def _layer_norm_forward_kernel(x, weight, bias, eps, y, mean, rstd):
    N, C = x.shape
    inv_c = _ONE / F32(C)
    for row in prange(N):
        total = _ZERO
        for c in range(C):
            total += x[row, c]
        mu = total * inv_c
        sq = _ZERO
        for c in range(C):
            diff = x[row, c] - mu
            sq += diff * diff
        var = sq * inv_c
        if not np.isfinite(var):  # squares overflowed float32 (or the row holds inf/NaN)
            _layer_norm_row_float64(x[row], weight, bias, eps, y[row], mean, rstd, row)
            continue
        r = _ONE / np.sqrt(var + eps)
        for c in range(C):
            y[row, c] = (x[row, c] - mu) * r * weight[c] + bias[c]
        mean[row] = mu
        rstd[row] = r


@kernel()
def _layer_norm_row_float64(xr, weight, bias, eps, yr, mean, rstd, row):
    """One row in float64, whose squares reach 1e308 (the rare path of the forward kernel)."""
    C = xr.shape[0]
    total = 0.0
    for c in range(C):
        total += np.float64(xr[c])
    mu = total / C
    sq = 0.0
    for c in range(C):
        diff = np.float64(xr[c]) - mu
        sq += diff * diff
    r = 1.0 / np.sqrt(sq / C + np.float64(eps))
    for c in range(C):
        yr[c] = F32((np.float64(xr[c]) - mu) * r * weight[c] + bias[c])
    mean[row] = F32(mu)
    rstd[row] = F32(r)


# No "contract": g = dy * weight must round the same way in both loops, or g - mean(g) is not
# exactly 0 when C = 1 (and rstd = 1/sqrt(eps) amplifies the difference).
@kernel(parallel=True, fastmath=REDUCE - {"contract"})
def _layer_norm_backward_kernel(dy, x, weight, mean, rstd, dx, dweight, dbias):
    N, C = x.shape
    inv_c = _ONE / F32(C)
    n_chunks = min(_CHUNKS, N)
    part_w = np.zeros((n_chunks, C), np.float64)  # per-chunk sums of dy * xhat
    part_b = np.zeros((n_chunks, C), np.float64)  # per-chunk sums of dy
    for chunk in prange(n_chunks):
        for row in range(chunk * N // n_chunks, (chunk + 1) * N // n_chunks):
            mu = mean[row]
            r = rstd[row]
            sum_g = _ZERO
            sum_gx = _ZERO
            for c in range(C):
                g = dy[row, c] * weight[c]
                sum_g += g
                sum_gx += g * ((x[row, c] - mu) * r)  # xhat first: (x - mu) may be ~1e20
            mean_g = sum_g * inv_c
            mean_gx = sum_gx * inv_c
            for c in range(C):
                xhat = (x[row, c] - mu) * r
                dx[row, c] = r * (dy[row, c] * weight[c] - mean_g - xhat * mean_gx)
                part_w[chunk, c] += dy[row, c] * xhat
                part_b[chunk, c] += dy[row, c]
    for c in range(C):
        sw = 0.0
        sb = 0.0
        for chunk in range(n_chunks):
            sw += part_w[chunk, c]
            sb += part_b[chunk, c]
        dweight[c] = sw
        dbias[c] = sb


def _check_params(op, x, weight, name="weight"):
    C = x.shape[-1]
    if weight.shape != (C,):
        raise ValueError("minilm.kernels.cpu.%s: %s must have shape (C,) = (%d,) for x of shape %s, got %s"
                         % (op, name, C, x.shape, weight.shape))


def layer_norm_forward(x, weight, bias, eps=1e-5):
    """LayerNorm over the last axis.  x (..., C), weight and bias (C,) float32.

    Returns y (..., C), mean (...) and rstd (...) = 1/sqrt(var + eps), the last two for the backward.
    """
    op = "layer_norm_forward"
    x = _checks.float32_array(op, "x", x)
    if x.ndim < 1:
        raise ValueError("minilm.kernels.cpu.%s: x must have at least 1 dimension, got a scalar" % op)
    weight = _checks.float32_array(op, "weight", weight)
    bias = _checks.float32_array(op, "bias", bias)
    _check_params(op, x, weight)
    _check_params(op, x, bias, "bias")
    C = x.shape[-1]
    y = _alloc.empty(x.shape)
    mean = _alloc.empty(x.shape[:-1])
    rstd = _alloc.empty(x.shape[:-1])
    _layer_norm_forward_kernel(x.reshape(-1, C), weight, bias, F32(eps),
                               y.reshape(-1, C), mean.reshape(-1), rstd.reshape(-1))  # (..., C) -> (N, C)
    return y, mean, rstd


def layer_norm_backward(dy, x, weight, mean, rstd):
    """Gradients of layer_norm_forward: returns dx (..., C), dweight (C,), dbias (C,)."""
    op = "layer_norm_backward"
    x = _checks.float32_array(op, "x", x)
    dy = _checks.float32_array(op, "dy", dy)
    weight = _checks.float32_array(op, "weight", weight)
    mean = _checks.float32_array(op, "mean", mean)
    rstd = _checks.float32_array(op, "rstd", rstd)
    _checks.same_shape(op, "x", x, "dy", dy)
    _check_params(op, x, weight)
    if mean.shape != x.shape[:-1] or rstd.shape != x.shape[:-1]:
        raise ValueError("minilm.kernels.cpu.%s: mean and rstd must have shape %s (x.shape[:-1]), got %s and %s"
                         % (op, x.shape[:-1], mean.shape, rstd.shape))
    C = x.shape[-1]
    dx = _alloc.empty(x.shape)
    dweight = _alloc.empty((C,))
    dbias = _alloc.empty((C,))
    _layer_norm_backward_kernel(dy.reshape(-1, C), x.reshape(-1, C), weight, mean.reshape(-1), rstd.reshape(-1),
                                dx.reshape(-1, C), dweight, dbias)  # (..., C) -> (N, C)
    return dx, dweight, dbias
