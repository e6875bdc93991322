"""Where the polynomial coefficients in `approx.py` come from (run: python -m minilm.kernels.cpu.approx_fit).

Numba from PyPI has no SVML vector math library, so `math.exp` / `math.erf` inside a kernel
become one scalar libm call per element and block vectorisation.  The kernels therefore use
their own polynomial approximations, built only from +, *, /, floor and a bit trick, which LLVM
turns into AVX instructions.  This script fits those polynomials in float64:

1. 2**f on [0, 1]:  p(f) = c0 + c1 f + ... + c6 f**6, so that 2**t = 2**floor(t) * p(t - floor(t)).

2. erfc(z) = s * exp(-z**2) * R(s),  s = 1 / (1 + z/2),  z >= 0.
   R(s) = erfc(z) * exp(z**2) / s is smooth on s in (0, 1] (R(1) = 1, R(0+) = 1/(2 sqrt(pi))),
   so a polynomial in s approximates it to a small *relative* error for every z, including the far
   tail where erfc(z) is tiny.  (This is the same change of variable as Numerical Recipes' erfcc,
   Press et al., "Numerical Recipes", 3rd ed., section 6.2.2; the coefficients here are our own fit.)
   The kernels clamp |x| <= 30, i.e. z <= 30/sqrt(2) = 21.2, so s >= 0.086: we fit on [0.08, 1].

Both fits minimise the maximum *relative* error with Lawson's algorithm (iteratively reweighted
least squares on Chebyshev nodes), which converges towards the minimax polynomial.
"""
import math

import numpy as np


def chebyshev_nodes(a, b, n):
    """n Chebyshev nodes of the first kind on [a, b]."""
    k = np.arange(n)
    return (a + b) / 2 + (b - a) / 2 * np.cos((2 * k + 1) * np.pi / (2 * n))


def fit_relative_minimax(func, a, b, degree, n_nodes=2000, iterations=60):
    """Coefficients c (lowest power first) of a degree-`degree` polynomial p with max |p/func - 1| small on [a, b]."""
    x = chebyshev_nodes(a, b, n_nodes)  # (n,)
    y = func(x)  # (n,)
    rows = np.vander(x, degree + 1, increasing=True) / y[:, None]  # (n, degree+1): p(x_i)/y_i = rows @ c
    weights = np.full(n_nodes, 1.0 / n_nodes)
    for _ in range(iterations):
        root_w = np.sqrt(weights)
        coef, *_ = np.linalg.lstsq(rows * root_w[:, None], root_w, rcond=None)
        err = np.abs(rows @ coef - 1.0)
        weights = weights * err
        weights /= weights.sum()
    return coef


def max_relative_error(coef, func, a, b, n=200_001):
    """max |p(x)/func(x) - 1| on a fine grid, with p evaluated in float64."""
    x = np.linspace(a, b, n)
    return float(np.max(np.abs(np.polyval(coef[::-1], x) / func(x) - 1.0)))


def erfc_ratio(s):
    """R(s) = erfc(z) exp(z^2) / s with z = 2 (1 - s) / s (inverse of s = 1 / (1 + z/2))."""
    z = 2.0 * (1.0 - s) / s
    erfc = np.array([math.erfc(v) for v in np.ravel(z)]).reshape(np.shape(z))
    return erfc * np.exp(z * z) / s


def main():
    exp2_coef = fit_relative_minimax(lambda f: 2.0 ** f, 0.0, 1.0, 6)
    print("EXP2_COEFFS (2**f on [0, 1], lowest power first), max rel err %.2e:"
          % max_relative_error(exp2_coef, lambda f: 2.0 ** f, 0.0, 1.0))
    print("    " + ",\n    ".join(repr(float(c)) for c in exp2_coef))
    erfc_coef = fit_relative_minimax(erfc_ratio, 0.08, 1.0, 9)
    print("ERFC_RATIO_COEFFS (R(s) on [0.08, 1], lowest power first), max rel err %.2e:"
          % max_relative_error(erfc_coef, erfc_ratio, 0.08, 1.0, n=20_001))
    print("    " + ",\n    ".join(repr(float(c)) for c in erfc_coef))


if __name__ == "__main__":
    main()
