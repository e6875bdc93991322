"""Element-wise ops: arithmetic with broadcasting, and the pointwise functions.

For z = f(x, y) with broadcasting, dL/dx = unbroadcast(dL/dz * df/dx, x.shape).
"""
import math

import numpy as np

from minilm.autograd.function import Function, unbroadcast
from minilm.backend import array_module, is_cupy


def _check_broadcast(op, a, b):
    try:
        return np.broadcast_shapes(np.shape(a), np.shape(b))
    except ValueError:
        raise ValueError(f"{op}: cannot broadcast shapes {tuple(np.shape(a))} and "
                         f"{tuple(np.shape(b))}") from None


class _Binary(Function):
    def forward(self, a, b):
        _check_broadcast(self.name.lower(), a, b)
        self.a_shape, self.b_shape = np.shape(a), np.shape(b)
        return self.compute(a, b)


class Add(_Binary):
    def compute(self, a, b):
        return a + b

    def backward(self, g):
        return unbroadcast(g, self.a_shape), unbroadcast(g, self.b_shape)


class Sub(_Binary):
    def compute(self, a, b):
        return a - b

    def backward(self, g):
        return unbroadcast(g, self.a_shape), unbroadcast(-g, self.b_shape)


class Mul(_Binary):
    def compute(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        return unbroadcast(g * self.b, self.a_shape), unbroadcast(g * self.a, self.b_shape)


class Div(_Binary):
    def compute(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        # d(a/b)/da = 1/b ; d(a/b)/db = -a/b^2
        ga = g / self.b
        gb = -ga * self.a / self.b
        return unbroadcast(ga, self.a_shape), unbroadcast(gb, self.b_shape)


class Pow(_Binary):
    """a ** b; the gradient for b (a * ... log a) is only formed when b needs one."""

    def compute(self, a, b):
        self.a, self.b = a, b
        self.out = a ** b
        return self.out

    def backward(self, g):
        ga = g * self.b * self.a ** (self.b - 1)
        gb = None
        if self.needs_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = unbroadcast(g * self.out * self.xp.log(self.a), self.b_shape)
        return unbroadcast(ga, self.a_shape), gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return (-g,)


class Exp(Function):
    def forward(self, a):
        self.out = self.xp.exp(a)
        return self.out

    def backward(self, g):
        return (g * self.out,)


class Log(Function):
    def forward(self, a):
        self.a = a
        return self.xp.log(a)

    def backward(self, g):
        return (g / self.a,)


class Tanh(Function):
    def forward(self, a):
        self.out = self.xp.tanh(a)
        return self.out

    def backward(self, g):
        return (g * (1 - self.out * self.out),)


class Sqrt(Function):
    def forward(self, a):
        self.out = self.xp.sqrt(a)
        return self.out

    def backward(self, g):
        return (g * 0.5 / self.out,)


class ReLU(Function):
    def forward(self, a):
        self.positive = a > 0
        return a * self.positive

    def backward(self, g):
        return (g * self.positive,)


def erf(x):
    """The error function for NumPy or CuPy arrays (NumPy itself has none).

    float64: Python's `math.erf` element by element, exact to the last bit
    (slow, meant for gradient checks and small arrays). float32: the
    Abramowitz & Stegun 7.1.26 approximation, erf(x) = 1 - (a1 t + ... + a5 t^5)
    exp(-x^2) with t = 1 / (1 + p|x|), whose absolute error is below 1.5e-7,
    i.e. at float32 rounding level. CuPy has an exact erf of its own.
    """
    if is_cupy(x):
        import cupyx.scipy.special              # only reachable when CuPy is installed and in use
        return cupyx.scipy.special.erf(x)
    if x.dtype == np.float64:
        return np.vectorize(math.erf, otypes=[np.float64])(x) if x.size else x.copy()
    ax = np.abs(x)
    t = 1.0 / (1.0 + np.float32(0.3275911) * ax)
    poly = t * (np.float32(0.254829592) + t * (np.float32(-0.284496736) + t * (
        np.float32(1.421413741) + t * (np.float32(-1.453152027) + t * np.float32(1.061405429)))))
    y = 1.0 - poly * np.exp(-ax * ax)
    return np.copysign(y, x).astype(x.dtype, copy=False)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu_reference(x, approximate):
    """GELU(x) = x * Phi(x) (Hendrycks & Gimpel 2016) and its derivative.

    approximate="none": Phi(x) = 0.5 (1 + erf(x / sqrt 2)), Phi'(x) = exp(-x^2/2) / sqrt(2 pi)
        GELU'(x) = Phi(x) + x Phi'(x)
    approximate="tanh": GELU(x) ~ 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
        GELU'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    Returns (y, dy/dx) so forward and backward share one formula.
    """
    xp = array_module(x)
    if approximate == "none":
        cdf = 0.5 * (1.0 + erf(x * _INV_SQRT_2))
        pdf = xp.exp(-0.5 * x * x) * _INV_SQRT_2PI
        return x * cdf, cdf + x * pdf
    if approximate == "tanh":
        th = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
        y = 0.5 * x * (1.0 + th)
        dy = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
        return y, dy
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


class GELU(Function):
    def forward(self, x, approximate="none"):
        y, self.dy = gelu_reference(x, approximate)
        return y.astype(x.dtype, copy=False)

    def backward(self, g):
        return (g * self.dy,)


class Where(Function):
    """where(cond, a, b): a where cond is True, b elsewhere (cond is not differentiable)."""

    def forward(self, cond, a, b):
        self.cond = self.xp.asarray(cond, dtype=bool)
        self.a_shape, self.b_shape = np.shape(a), np.shape(b)
        try:
            return self.xp.where(self.cond, a, b)
        except ValueError:
            raise ValueError(f"where: cannot broadcast shapes {tuple(self.cond.shape)}, "
                             f"{tuple(self.a_shape)} and {tuple(self.b_shape)}") from None

    def backward(self, g):
        zero = self.xp.zeros((), dtype=g.dtype)
        ga = unbroadcast(self.xp.where(self.cond, g, zero), self.a_shape)
        gb = unbroadcast(self.xp.where(self.cond, zero, g), self.b_shape)
        return None, ga, gb


class MaskedFill(Function):
    """x with `value` wherever mask is True; the filled places get no gradient."""

    def forward(self, x, mask, value):
        self.mask = self.xp.asarray(mask, dtype=bool)
        try:
            shape = np.broadcast_shapes(self.mask.shape, x.shape)
        except ValueError:
            shape = None
        if shape != x.shape:
            raise ValueError(f"masked_fill: mask of shape {tuple(self.mask.shape)} does not "
                             f"broadcast to the input's shape {tuple(x.shape)}")
        return self.xp.where(self.mask, self.xp.asarray(value, dtype=x.dtype), x)

    def backward(self, g):
        return self.xp.where(self.mask, self.xp.zeros((), dtype=g.dtype), g), None, None
