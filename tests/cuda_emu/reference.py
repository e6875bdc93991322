"""Plain-NumPy float64 references for the CUDA kernels, written directly from the math.

Used by tests/test_cuda_emulated.py (kernels run on the CPU emulator) and
tests/test_cuda_gpu.py (kernels run on a GPU). Everything is computed in float64 with whole
matrices, the opposite of the tiled float32 kernels, so agreement means something.
"""
import math

import numpy as np

_erf = np.frompyfunc(math.erf, 1, 1)


def erf(x):
    return _erf(np.asarray(x, dtype=np.float64)).astype(np.float64)


def attention(q, k, v, dout, *, causal=False, key_mask=None, scale=None):
    """out, lse, dq, dk, dv of softmax(scale q k^T + mask) v, in float64."""
    q, k, v, dout = (np.asarray(a, dtype=np.float64) for a in (q, k, v, dout))
    b, h, tq, d = q.shape
    tk = k.shape[2]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    s = scale * q @ k.swapaxes(-1, -2)                                  # (B, H, Tq, Tk)
    visible = np.ones((b, 1, tq, tk), dtype=bool)
    if causal:
        i = np.arange(tq)[:, None]
        j = np.arange(tk)[None, :]
        visible = visible & (j <= i + (tk - tq))
    if key_mask is not None:
        visible = visible & np.asarray(key_mask, dtype=bool)[:, None, None, :]
    visible = np.broadcast_to(visible, s.shape)
    s = np.where(visible, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)                                   # (B, H, Tq, 1)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.where(visible, np.exp(s - m), 0.0)
    l = e.sum(axis=-1, keepdims=True)
    p = e / np.where(l > 0, l, 1.0)                                     # rows with no key: 0
    out = p @ v                                                         # (B, H, Tq, D)
    lse = np.where(l[..., 0] > 0, m[..., 0] + np.log(np.where(l[..., 0] > 0, l[..., 0], 1.0)),
                   -np.inf)                                             # (B, H, Tq)
    dv = p.swapaxes(-1, -2) @ dout                                      # (B, H, Tk, D)
    dp = dout @ v.swapaxes(-1, -2)                                      # (B, H, Tq, Tk)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = scale * ds @ k                                                 # (B, H, Tq, D)
    dk = scale * ds.swapaxes(-1, -2) @ q                                # (B, H, Tk, D)
    return out, lse, dq, dk, dv


def gelu(x, approximate):
    """GELU(x) and its derivative, in float64."""
    x = np.asarray(x, dtype=np.float64)
    if approximate == "none":
        cdf = 0.5 * (1.0 + erf(x / math.sqrt(2.0)))
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return x * cdf, cdf + x * pdf
    c = math.sqrt(2.0 / math.pi)
    t = np.tanh(c * (x + 0.044715 * x ** 3))
    return 0.5 * x * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x)


def layer_norm(x, weight, bias, eps, dy):
    """y, mean, rstd, dx, dweight, dbias of LayerNorm over the last axis, in float64."""
    x, dy = np.asarray(x, dtype=np.float64), np.asarray(dy, dtype=np.float64)
    c = x.shape[-1]
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    bias = np.zeros(c) if bias is None else np.asarray(bias, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * rstd
    y = xhat * w + bias
    g = dy * w
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    rows = tuple(range(x.ndim - 1))
    return y, mean[..., 0], rstd[..., 0], dx, (dy * xhat).sum(axis=rows), dy.sum(axis=rows)


def cross_entropy(logits, targets, ignore_index, grad_scale):
    """loss_sum, n_counted, lse, dlogits of softmax cross-entropy with ignore_index, float64."""
    x = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets)
    n, v = x.shape
    m = x.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]   # (N,)
    counted = targets != ignore_index
    safe = np.where(counted, targets, 0)
    loss_sum = float(((lse - x[np.arange(n), safe]) * counted).sum())
    onehot = np.zeros_like(x)
    onehot[np.arange(n), safe] = 1.0
    dlogits = grad_scale * (np.exp(x - lse[:, None]) - onehot) * counted[:, None]
    return loss_sum, int(counted.sum()), lse, dlogits
