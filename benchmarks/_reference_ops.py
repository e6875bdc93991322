"""Plain-NumPy reference ops for bench_kernels.py, computed the way a straightforward autograd engine would.

Each op has a forward that returns its output plus what its backward keeps (the "saved tensors"),
and a backward that turns the upstream gradient into input gradients.  No fusion, no threads
beyond what NumPy's BLAS does by itself, float32 throughout.  Attention materialises the full
(B, H, Tq, Tk) probability matrix P, as an engine that builds it from matmul + softmax + matmul does.

These stand in for the engine's own ops (minilm.nn.functional) until those exist.
"""
import numpy as np

from minilm.kernels.cpu.gelu import ERFC_RATIO_COEFFS

F32 = np.float32


# ---- attention: S = scale Q K^T (+ masks), P = softmax(S), O = P V -----------------------------------
def attention_forward(q, k, v, causal=False, key_mask=None, scale=None):
    """Returns out (B, H, Tq, D) and saved = (P, scale)."""
    Tq, D = q.shape[2], q.shape[3]
    Tk = k.shape[2]
    scale = F32(1.0 / np.sqrt(D) if scale is None else scale)
    scores = (q @ k.swapaxes(-1, -2)) * scale  # (B, H, Tq, D) @ (B, H, D, Tk) -> (B, H, Tq, Tk)
    if causal:
        visible = np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + (Tk - Tq)  # (Tq, Tk)
        scores = np.where(visible, scores, F32(-np.inf))
    if key_mask is not None:
        scores = np.where(key_mask[:, None, None, :], scores, F32(-np.inf))  # (B, Tk) -> (B, 1, 1, Tk)
    scores -= scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    out = probs @ v  # (B, H, Tq, Tk) @ (B, H, Tk, D) -> (B, H, Tq, D)
    return out, (probs, scale)


def attention_backward(q, k, v, saved, dout):
    """Returns dq, dk, dv from the saved probabilities."""
    probs, scale = saved
    dv = probs.swapaxes(-1, -2) @ dout  # (B, H, Tk, Tq) @ (B, H, Tq, D) -> (B, H, Tk, D)
    dprobs = dout @ v.swapaxes(-1, -2)  # (B, H, Tq, D) @ (B, H, D, Tk) -> (B, H, Tq, Tk)
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))  # softmax backward
    dscores *= scale
    dq = dscores @ k  # (B, H, Tq, Tk) @ (B, H, Tk, D) -> (B, H, Tq, D)
    dk = dscores.swapaxes(-1, -2) @ q  # (B, H, Tk, Tq) @ (B, H, Tq, D) -> (B, H, Tk, D)
    return dq, dk, dv


# ---- GELU ----------------------------------------------------------------------------------------------
def _erf(x):
    """erf in NumPy (NumPy has none): erfc(z) = s exp(-z^2) R(s), s = 1/(1 + z/2), R fitted (approx_fit.py)."""
    z = np.abs(x)
    s = F32(1.0) / (F32(1.0) + F32(0.5) * z)
    r = np.full_like(x, F32(ERFC_RATIO_COEFFS[-1]))
    for c in ERFC_RATIO_COEFFS[-2::-1]:
        r = r * s + F32(c)
    erfc = s * np.exp(-z * z) * r
    return np.sign(x) * (F32(1.0) - erfc)


_SQRT_HALF = F32(np.sqrt(0.5))
_SQRT_2_OVER_PI = F32(np.sqrt(2.0 / np.pi))
_INV_SQRT_2PI = F32(1.0 / np.sqrt(2.0 * np.pi))


def gelu_forward(x, approximate="none"):
    """Returns y and saved = x."""
    if approximate == "tanh":
        y = F32(0.5) * x * (F32(1.0) + np.tanh(_SQRT_2_OVER_PI * (x + F32(0.044715) * x * x * x)))
    else:
        y = F32(0.5) * x * (F32(1.0) + _erf(x * _SQRT_HALF))
    return y, x


def gelu_backward(saved, dy, approximate="none"):
    x = saved
    if approximate == "tanh":
        u = _SQRT_2_OVER_PI * (x + F32(0.044715) * x * x * x)
        t = np.tanh(u)
        du = _SQRT_2_OVER_PI * (F32(1.0) + F32(3 * 0.044715) * x * x)
        grad = F32(0.5) * (F32(1.0) + t) + F32(0.5) * x * (F32(1.0) - t * t) * du
    else:
        grad = F32(0.5) * (F32(1.0) + _erf(x * _SQRT_HALF)) + x * np.exp(F32(-0.5) * x * x) * _INV_SQRT_2PI
    return dy * grad


# ---- LayerNorm over the last axis ---------------------------------------------------------------------
def layer_norm_forward(x, weight, bias, eps=1e-5):
    """Returns y and saved = (xhat, rstd, weight)."""
    mean = x.mean(axis=-1, keepdims=True)  # (..., C) -> (..., 1)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    rstd = F32(1.0) / np.sqrt(var + F32(eps))
    xhat = (x - mean) * rstd
    return xhat * weight + bias, (xhat, rstd, weight)


def layer_norm_backward(saved, dy):
    xhat, rstd, weight = saved
    C = xhat.shape[-1]
    dweight = (dy * xhat).reshape(-1, C).sum(axis=0)  # (..., C) -> (C,)
    dbias = dy.reshape(-1, C).sum(axis=0)
    g = dy * weight
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dweight, dbias


# ---- softmax cross-entropy ----------------------------------------------------------------------------
def cross_entropy_forward(logits, targets, ignore_index=-100):
    """Returns (loss_sum, n_counted) and saved = (probs, targets, counted)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)  # (N, V)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    counted = targets != ignore_index  # (N,)
    safe_targets = np.where(counted, targets, 0)
    picked = log_probs[np.arange(len(targets)), safe_targets]  # (N,)
    loss_sum = -float(picked[counted].sum(dtype=np.float64))
    return (loss_sum, int(counted.sum())), (np.exp(log_probs), safe_targets, counted)


def cross_entropy_backward(saved, grad_scale):
    probs, safe_targets, counted = saved
    dlogits = probs.copy()
    dlogits[np.arange(len(safe_targets)), safe_targets] -= F32(1.0)
    dlogits *= F32(grad_scale)
    dlogits[~counted] = F32(0.0)
    return dlogits
