"""Vectorisable float32 exponentials for Numba kernels (PyPI Numba has no SVML: math.exp does not vectorise).

    2**t = 2**n * 2**f,   n = floor(t),  f = t - n in [0, 1)

2**f is a degree-6 polynomial (coefficients fitted by `approx_fit.py`, max relative error 1.9e-9 in
float64, about 1e-7 once evaluated in float32); 2**n is built directly from the float32 bit pattern
(exponent field n + 127).  Everything is +, *, floor and integer ops, which LLVM vectorises to AVX.

Edge cases (float32): t <= -127 gives exactly 0 (results below 2**-126 are flushed to zero instead
of becoming subnormals), t >= 128 gives +inf, -inf gives 0, +inf gives inf, NaN gives NaN.
e**x = 2**(x log2 e): the product x log2 e rounds, so for |x| ~ 80 the relative error grows to
about |x| 6e-8 = 5e-6.  `gaussian(x)` = exp(-x^2/2) avoids that growth with an exact split of x^2.
"""
import numpy as np
from numba.core import types
from numba.extending import intrinsic

from ._jit import helper

F32 = np.float32
LOG2E = F32(1.4426950408889634)
LN2 = F32(0.6931471805599453)
_LO = F32(-127.0)
_HI = F32(128.0)
_ZERO = F32(0.0)
_ONE = F32(1.0)
_HALF = F32(0.5)
_SIXTY_FOUR = F32(64.0)
_INV_SIXTY_FOUR = F32(1.0 / 64.0)
_MAX_N = F32(126.0)
# ln 2 = LN2_HI + LN2_LO, LN2_HI with 9 significant bits so n * LN2_HI is exact for n <= 127
_LN2_HI = F32(0.693359375)
_LN2_LO = F32(0.6931471805599453 - 0.693359375)
# 2**f on [0, 1], lowest power first (approx_fit.py)
_E0 = F32(1.0000000018557766)
_E1 = F32(0.6931469838424059)
_E2 = F32(0.24022983625156696)
_E3 = F32(0.055483342085408505)
_E4 = F32(0.009678840793292759)
_E5 = F32(0.001243968969202619)
_E6 = F32(0.0002170224907012963)


@intrinsic
def pow2_of_integer(typingctx, n):
    """2**n as float32, for a float32 n holding an integer in [-127, 128] (-127 -> 0.0, 128 -> inf).

    Builds the IEEE-754 bit pattern: exponent field n + 127, mantissa 0.
    """
    if not (isinstance(n, types.Float) and n.bitwidth == 32):
        return None
    signature = types.float32(types.float32)

    def codegen(context, builder, sig, args):
        i32 = context.get_value_type(types.int32)
        f32 = context.get_value_type(types.float32)
        as_int = builder.fptosi(args[0], i32)
        biased = builder.add(as_int, i32(127))
        bits = builder.shl(biased, i32(23))
        return builder.bitcast(bits, f32)

    return signature, codegen


@helper()
def _exp2_parts(n, f):
    """2**n * 2**f for integral float32 n in [-127, 128] and f in [0, 1) (Horner's rule)."""
    p = _E6
    p = p * f + _E5
    p = p * f + _E4
    p = p * f + _E3
    p = p * f + _E2
    p = p * f + _E1
    p = p * f + _E0
    return p * pow2_of_integer(n)


@helper()
def exp2(t):
    """2**t for a float32 t (see the module docstring for accuracy and edge cases)."""
    t = _LO if t < _LO else t  # comparisons are false for NaN, so NaN passes through these two
    t = _HI if t > _HI else t
    n = np.floor(t if t == t else _ZERO)  # NaN-free integer part, safe to convert to int
    return _exp2_parts(n, t - n)


@helper()
def exp(x):
    """e**x for a float32 x, as 2**(x log2 e)."""
    return exp2(x * LOG2E)


@helper()
def gaussian(x):
    """exp(-x^2/2) for a float32 x with |x| <= 30 (or NaN), to about 1.5e-7 relative error.

    x^2/2 ~ 450 cannot be rounded to float32 without an absolute error of ~3e-5 in the exponent,
    so it is split exactly:  x = xh + xl with xh = x rounded to a multiple of 1/64 (xh^2 is then
    exact in float32) and x^2/2 = A + a,  A = xh^2/2 (exact),  a = xl (x + xh)/2 (small).
    Cody-Waite reduction:  n = floor((A + a) log2 e),  r = (A - n LN2_HI) + a - n LN2_LO in [0, ln 2)
    (A - n LN2_HI is exact), and  exp(-(A + a)) = 2**-(n+1) * 2**(1 - r log2 e).
    Results below 2**-126 (|x| > 13.2) are flushed to 0.
    """
    xh = np.floor(x * _SIXTY_FOUR + _HALF) * _INV_SIXTY_FOUR
    xl = x - xh
    big = xh * xh * _HALF
    small = xl * (x + xh) * _HALF
    n = np.floor((big + small) * LOG2E)
    n = n if n < _MAX_N else _MAX_N  # NaN -> 126 (a valid integer); the NaN still flows through r
    r = (big - n * _LN2_HI) + small - n * _LN2_LO
    return _exp2_parts(-n - _ONE, _ONE - r * LOG2E)
