"""GELU, forward and backward, in both of its usual forms (Hendrycks & Gimpel 2016, "Gaussian Error Linear Units").

exact ("none"):  gelu(x) = x Phi(x),  Phi(x) = (1 + erf(x/sqrt2)) / 2,   gelu'(x) = Phi(x) + x phi(x),
                 phi(x) = exp(-x^2/2) / sqrt(2 pi)
tanh ("tanh"):   gelu(x) = x (1 + tanh(u)) / 2 = x sigmoid(2u),  u = sqrt(2/pi) (x + 0.044715 x^3),
                 gelu'(x) = sig + x sig (1 - sig) 2 u'(x),  sig = sigmoid(2u),  u' = sqrt(2/pi) (1 + 3 0.044715 x^2)

How Phi is computed without catastrophic cancellation (1 + erf(x) loses everything for x << 0):
    Phi(-|x|) = erfc(z) / 2 = s exp(-z^2) R(s) / 2,   z = |x|/sqrt2,  s = 1 / (1 + z/2)
with R a fitted polynomial (approx_fit.py), and Phi(x) = 1 - Phi(-x) for x > 0.  exp(-z^2) = exp(-x^2/2)
is the same factor phi needs, so forward and backward each take one exponential.  `gaussian`
splits x^2/2 exactly (approx.py), so the far tail keeps float32 relative accuracy: the max relative
error against the float64 reference over x in [-12, 12] measured 4.5e-7 (tests require <= 1e-6).

The tanh form computes sigmoid(2u) = 1 / (1 + exp(-2u)) (no cancellation for x << 0).  Its exponent
-2u is rounded to float32, which costs a relative error of about |2u| 2**-23 in the far negative
tail: below 1e-6 for |x| < 4, about 1e-5 at x = -10 where gelu(x) ~ 1e-37 (see tests).

Non-finite inputs (documented behaviour): gelu(+inf) = +inf, gelu(-inf) = -0.0 (the limit; the
formula would give -inf * 0 = NaN), gelu'(+inf) = 1, gelu'(-inf) = 0, NaN -> NaN.  Results below
about 1e-35 in magnitude (x < -13 for the exact form, x < -9.7 for the tanh form) may be flushed to
zero instead of becoming subnormal numbers.
"""
import numpy as np
from numba import prange

from . import _alloc, _checks
from ._jit import ELEMENTWISE, helper, kernel
from .approx import LOG2E, exp2, gaussian

F32 = np.float32
_ONE = F32(1.0)
_HALF = F32(0.5)
_CLAMP = F32(30.0)  # beyond |x| = 30 both Phi's tail and the Gaussian are exactly 0 in float32
_HALF_OVER_SQRT2 = F32(0.5 / np.sqrt(2.0))  # z/2 = |x| / (2 sqrt2)
_INV_SQRT_2PI = F32(1.0 / np.sqrt(2.0 * np.pi))
# R(s) = erfc(z) exp(z^2) / s on s in [0.08, 1], lowest power first (approx_fit.py)
ERFC_RATIO_COEFFS = (
    0.282090422911805,
    0.28225216222526217,
    0.24455074369650726,
    0.19382428607200397,
    0.0052619482868111606,
    0.20709726786646904,
    -0.3883764201351232,
    0.2008120232030799,
    -0.019572125642982156,
    -0.007940376767931315,
)
_R0, _R1, _R2, _R3, _R4, _R5, _R6, _R7, _R8, _R9 = (F32(c) for c in ERFC_RATIO_COEFFS)
# tanh form: -2u log2 e = x (K1 + K3 x^2)
_SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))
_K1 = F32(-2.0 * _SQRT_2_OVER_PI * float(LOG2E))
_K3 = F32(-2.0 * _SQRT_2_OVER_PI * float(LOG2E) * 0.044715)
_DU1 = F32(2.0 * _SQRT_2_OVER_PI)  # 2 u'(x) = DU1 + DU3 x^2
_DU3 = F32(2.0 * _SQRT_2_OVER_PI * 3.0 * 0.044715)


@helper()
def _clamp_low(x):
    """max(x, -30) that keeps NaN as NaN."""
    return -_CLAMP if x < -_CLAMP else x


@helper()
def _clamp_both(x):
    """x clamped to [-30, 30], NaN kept."""
    x = -_CLAMP if x < -_CLAMP else x
    return _CLAMP if x > _CLAMP else x


@helper()
def _gaussian_and_tail(x):
    """(exp(-x^2/2), Phi(-|x|)) for a finite float32 x."""
    s = _ONE / (_ONE + abs(x) * _HALF_OVER_SQRT2)
    r = _R9
    r = r * s + _R8
    r = r * s + _R7
    r = r * s + _R6
    r = r * s + _R5
    r = r * s + _R4
    r = r * s + _R3
    r = r * s + _R2
    r = r * s + _R1
    r = r * s + _R0
    gauss = gaussian(x)  # exp(-x^2/2)
    return gauss, _HALF * s * r * gauss


@helper()
def _cdf(x, tail):
    """Phi(x) from tail = Phi(-|x|)."""
    return tail if x < 0 else _ONE - tail


@kernel(parallel=True, fastmath=ELEMENTWISE)
def _gelu_erf_forward_kernel(x, y):
    for i in prange(x.size):
        xe = _clamp_both(x[i])
        gauss, tail = _gaussian_and_tail(xe)
        y[i] = _clamp_low(x[i]) * _cdf(xe, tail)


@kernel(parallel=True, fastmath=ELEMENTWISE)
def _gelu_erf_backward_kernel(x, dy, dx):
    for i in prange(x.size):
        xe = _clamp_both(x[i])
        gauss, tail = _gaussian_and_tail(xe)
        dx[i] = dy[i] * (_cdf(xe, tail) + xe * gauss * _INV_SQRT_2PI)


@helper()
def _sigmoid_2u(x):
    """sigmoid(2u) = (1 + tanh u)/2 for a finite float32 x."""
    e = exp2(x * (_K1 + _K3 * x * x))  # exp(-2u) = 2**(-2u log2 e)
    return _ONE / (_ONE + e)


@kernel(parallel=True, fastmath=ELEMENTWISE)
def _gelu_tanh_forward_kernel(x, y):
    for i in prange(x.size):
        y[i] = _clamp_low(x[i]) * _sigmoid_2u(_clamp_both(x[i]))


@kernel(parallel=True, fastmath=ELEMENTWISE)
def _gelu_tanh_backward_kernel(x, dy, dx):
    for i in prange(x.size):
        xe = _clamp_both(x[i])
        sig = _sigmoid_2u(xe)
        dx[i] = dy[i] * (sig + xe * sig * (_ONE - sig) * (_DU1 + _DU3 * xe * xe))


_FORWARD = {"none": _gelu_erf_forward_kernel, "tanh": _gelu_tanh_forward_kernel}
_BACKWARD = {"none": _gelu_erf_backward_kernel, "tanh": _gelu_tanh_backward_kernel}


def _check_approximate(op, approximate):
    if approximate not in _FORWARD:
        raise ValueError("minilm.kernels.cpu.%s: approximate must be 'none' or 'tanh', got %r" % (op, approximate))


def gelu_forward(x, approximate="none"):
    """y = gelu(x) element-wise, any shape, float32.  approximate: "none" (erf) or "tanh"."""
    _check_approximate("gelu_forward", approximate)
    x = _checks.float32_array("gelu_forward", "x", x)
    y = _alloc.empty(x.shape)
    _FORWARD[approximate](x.reshape(-1), y.reshape(-1))  # (...) -> (N,) views
    return y


def gelu_backward(x, dy, approximate="none"):
    """dx = dy * gelu'(x) element-wise, float32; x and dy of the same shape."""
    _check_approximate("gelu_backward", approximate)
    x = _checks.float32_array("gelu_backward", "x", x)
    dy = _checks.float32_array("gelu_backward", "dy", dy)
    _checks.same_shape("gelu_backward", "x", x, "dy", dy)
    dx = _alloc.empty(x.shape)
    _BACKWARD[approximate](x.reshape(-1), dy.reshape(-1), dx.reshape(-1))  # (...) -> (N,) views
    return dx
