"""The privacy accountant of DP-SGD: Rényi DP of the sampled Gaussian mechanism, then (epsilon, delta).

One DP-SGD step releases (sum of clipped per-example gradients of a lot) +
N(0, sigma^2 C^2). The lot is Poisson-sampled: each of the N examples is in
it independently with probability q. For two datasets differing in one
example, the step's output is then distributed as

    mu0 = N(0, sigma^2)                 (the example absent)
    mu  = (1 - q) mu0 + q N(1, sigma^2) (present with probability q; in units of C)

Rényi differential privacy of order alpha (Mironov 2017, "Rényi Differential
Privacy") bounds D_alpha(mu || mu0) = log(A_alpha) / (alpha - 1), with

    A_alpha = E_{z ~ mu0} [ (mu(z) / mu0(z))^alpha ].

Mironov, Talwar & Zhang 2019 ("Rényi Differential Privacy of the Sampled
Gaussian Mechanism", arXiv:1908.10530) show this direction is the larger
one, and compute A_alpha:
  integer alpha (section 3.2), expanding the binomial:
      A_alpha = sum_{k=0}^{alpha} C(alpha, k) (1 - q)^(alpha - k) q^k exp((k^2 - k) / (2 sigma^2))
  fractional alpha (section 3.3), splitting the integral at z0 = sigma^2 log(1/q - 1) + 1/2
  (where q mu1/mu0 = 1 - q) and expanding each side in a convergent binomial series:
      A_alpha = sum_{k>=0} C(alpha, k) (1-q)^(alpha-k) q^k     exp((k^2 - k)/(2 sigma^2)) erfc((k - z0)/(sqrt2 sigma)) / 2
              + sum_{k>=0} C(alpha, k) q^(alpha-k) (1-q)^k     exp((j^2 - j)/(2 sigma^2)) erfc((z0 - j)/(sqrt2 sigma)) / 2,
      j = alpha - k; C(alpha, k) is the generalised binomial coefficient (its sign alternates
      once k > alpha + 1, and we keep the sign). Where the series converges too slowly (1,000
      terms), the chord between the neighbouring integer orders is used instead, an upper
      bound because log A_alpha is convex in alpha.
  q = 1 (no sampling): the Gaussian mechanism, alpha / (2 sigma^2) exactly.

Composition: RDP adds up over steps at each order (Mironov 2017, Prop. 1),
so T steps cost T times one step. Conversion to (epsilon, delta), minimised
over the orders:
  "classic" (Mironov 2017, Prop. 3):  eps = rdp + log(1/delta) / (alpha - 1)
  "tight"   (Canonne, Kamath & Steinke 2020, Prop. 12; Balle et al. 2020, Thm. 21; the one
             TensorFlow Privacy, Google's dp_accounting and Opacus use):
            eps = rdp + log((alpha - 1)/alpha) - (log delta + log alpha) / (alpha - 1)
The default is "tight"; it is never larger than "classic" for alpha >= 2.

All arithmetic is in log space (A_alpha reaches exp(10^4) at large orders
and small sigma); only the standard library and NumPy are used.
"""
import math
import numbers

import numpy as np

# Opacus's default orders (1.1 ... 10.9 in steps of 0.1, then 12 ... 63).
DEFAULT_ORDERS = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))
_MAX_SERIES_TERMS = 1000


def _check_q_sigma(q, noise_multiplier, where):
    for name, v in (("sample_rate", q), ("noise_multiplier", noise_multiplier)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{where}: {name} must be a finite number, got {v!r}")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"{where}: sample_rate q must be in [0, 1], got {q}")
    if noise_multiplier < 0:
        raise ValueError(f"{where}: noise_multiplier sigma must be >= 0, got {noise_multiplier}")


def _check_orders(orders, where):
    arr = np.atleast_1d(np.asarray(orders, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{where}: orders must be a non-empty list of numbers, got {orders!r}")
    if np.any(np.isnan(arr)) or np.any(arr <= 1.0):
        raise ValueError(f"{where}: every Rényi order alpha must be > 1, got {arr[(arr <= 1) | np.isnan(arr)][:5]}")
    return arr


def _log_add(a, b):
    """log(exp(a) + exp(b)) without overflow."""
    lo, hi = min(a, b), max(a, b)
    return hi if lo == -math.inf else hi + math.log1p(math.exp(lo - hi))


def _log_erfc(x):
    """log(erfc(x)), accurate also where erfc(x) underflows (x > ~26).

    Beyond x = 20 the asymptotic series erfc(x) ~ exp(-x^2) / (x sqrt(pi)) (1 - 1/(2x^2) +
    3/(4x^4) - 15/(8x^6) + 105/(16x^8)) is used; its next term is below 1e-11 there.
    """
    if x < 20.0:
        return math.log(math.erfc(x))
    r = 1.0 / (2.0 * x * x)
    series = 1.0 - r + 3.0 * r ** 2 - 15.0 * r ** 3 + 105.0 * r ** 4
    return -x * x - math.log(x) - 0.5 * math.log(math.pi) + math.log(series)


def _log_abs_binom(alpha, k):
    """log |C(alpha, k)| and its sign, for real alpha > 0 and integer k >= 0.

    C(alpha, k) = alpha (alpha-1) ... (alpha-k+1) / k!; for fractional alpha the factors
    alpha - i turn negative from i = floor(alpha) + 1 on. math.lgamma returns log|Gamma|
    also at negative non-integers, which is what the generalised coefficient needs.
    """
    if float(alpha).is_integer() and k > alpha:
        return -math.inf, 1
    log_abs = math.lgamma(alpha + 1) - math.lgamma(k + 1) - math.lgamma(alpha - k + 1)
    negatives = max(0, k - math.floor(alpha) - 1)
    return log_abs, (-1 if negatives % 2 else 1)


def _log_a_int(q, sigma, alpha):
    log_a = -math.inf
    log_q, log_1mq = math.log(q), math.log1p(-q)
    for k in range(alpha + 1):
        log_coef = math.lgamma(alpha + 1) - math.lgamma(k + 1) - math.lgamma(alpha - k + 1)
        log_a = _log_add(log_a, log_coef + k * log_q + (alpha - k) * log_1mq + (k * k - k) / (2 * sigma ** 2))
    return log_a


def _log_a_frac(q, sigma, alpha):
    """Section 3.3 of Mironov, Talwar & Zhang 2019; positive and negative terms summed separately.

    Returns None if the series has not converged after _MAX_SERIES_TERMS terms: its terms shrink
    only like k^-(alpha+2) exp(-z0^2 / (2 sigma^2)), which is slow for large sigma and large q.
    """
    z0 = sigma ** 2 * math.log(1.0 / q - 1.0) + 0.5
    log_q, log_1mq = math.log(q), math.log1p(-q)
    pos, neg = -math.inf, -math.inf
    last0 = last1 = math.inf
    for k in range(_MAX_SERIES_TERMS):
        log_c, sign = _log_abs_binom(alpha, k)
        j = alpha - k
        t0 = (log_c + k * log_q + j * log_1mq + (k * k - k) / (2 * sigma ** 2)
              + math.log(0.5) + _log_erfc((k - z0) / (math.sqrt(2) * sigma)))
        t1 = (log_c + j * log_q + k * log_1mq + (j * j - j) / (2 * sigma ** 2)
              + math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2) * sigma)))
        for t in (t0, t1):
            if sign > 0:
                pos = _log_add(pos, t)
            else:
                neg = _log_add(neg, t)
        total = pos if neg == -math.inf else pos + math.log1p(-math.exp(min(0.0, neg - pos)))
        # Past k = alpha + 1 the signs alternate and the magnitudes shrink, so the error of the
        # partial sum is below the next term: stop once the terms are exp(-30) ~ 1e-13 of the total.
        if k > alpha + 1 and t0 < last0 and t1 < last1 and max(t0, t1) < total - 30:
            return total
        last0, last1 = t0, t1
    return None


def _log_a_interpolated(q, sigma, alpha):
    """An upper bound on log A_alpha from the integer orders around alpha.

    log A_alpha = (alpha - 1) D_alpha is a cumulant generating function, convex in alpha
    (and 0 at alpha = 1), so it lies below the chord between floor(alpha) and ceil(alpha).
    Used where the fractional series converges too slowly; the bound is safe (epsilon can
    only come out larger).
    """
    lo, hi = math.floor(alpha), math.ceil(alpha)
    t = alpha - lo
    log_lo = 0.0 if lo == 1 else _log_a_int(q, sigma, lo)
    return (1 - t) * log_lo + t * _log_a_int(q, sigma, hi)


def rdp_sampled_gaussian(sample_rate, noise_multiplier, orders=DEFAULT_ORDERS):
    """RDP epsilon(alpha) of ONE step of the Poisson-sampled Gaussian mechanism, one per order.

    sample_rate        q, the probability that an example is in the lot
    noise_multiplier   sigma = noise std / clipping norm C
    orders             Rényi orders alpha > 1 (integers exact; fractional by the convergent series, or an upper bound where it is too slow;
                       inf allowed: the bound is then inf for q > 0)
    """
    _check_q_sigma(sample_rate, noise_multiplier, "rdp_sampled_gaussian")
    alphas = _check_orders(orders, "rdp_sampled_gaussian")
    q, sigma = float(sample_rate), float(noise_multiplier)
    out = np.empty(len(alphas))
    for i, alpha in enumerate(alphas):
        if q == 0.0:
            out[i] = 0.0
        elif math.isinf(alpha) or sigma == 0.0:
            out[i] = math.inf
        elif q == 1.0:
            out[i] = alpha / (2.0 * sigma ** 2)
        elif float(alpha).is_integer():
            out[i] = _log_a_int(q, sigma, int(alpha)) / (alpha - 1)
        else:
            log_a = _log_a_frac(q, sigma, float(alpha))
            if log_a is None:
                log_a = _log_a_interpolated(q, sigma, float(alpha))
            out[i] = log_a / (alpha - 1)
    return out


def compute_rdp(sample_rate, noise_multiplier, steps, orders=DEFAULT_ORDERS):
    """RDP of `steps` DP-SGD steps: composition adds the per-step RDP at every order."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"compute_rdp: steps must be an int >= 0, got {steps!r}")
    return rdp_sampled_gaussian(sample_rate, noise_multiplier, orders) * int(steps)


def rdp_to_epsilon(orders, rdp, delta, conversion="tight"):
    """(epsilon, the order that gave it): the smallest epsilon over the orders for this delta."""
    alphas = _check_orders(orders, "rdp_to_epsilon")
    rdp = np.atleast_1d(np.asarray(rdp, dtype=np.float64))
    if rdp.shape != alphas.shape:
        raise ValueError(f"rdp_to_epsilon: {len(alphas)} orders but {rdp.size} RDP values")
    if np.any(rdp < 0) or np.any(np.isnan(rdp)):
        raise ValueError("rdp_to_epsilon: RDP values must be >= 0")
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not 0.0 < delta < 1.0:
        raise ValueError(f"rdp_to_epsilon: delta must be in (0, 1), got {delta!r}")
    with np.errstate(over="ignore", invalid="ignore"):
        if conversion == "classic":
            eps = rdp + math.log(1.0 / delta) / (alphas - 1)
        elif conversion == "tight":
            eps = rdp + np.log1p(-1.0 / alphas) - (math.log(delta) + np.log(alphas)) / (alphas - 1)
        else:
            raise ValueError(f"rdp_to_epsilon: conversion must be 'tight' or 'classic', got {conversion!r}")
    eps = np.where(np.isnan(eps), np.inf, eps)
    best = int(np.argmin(eps))
    return max(0.0, float(eps[best])), float(alphas[best])


def dp_sgd_epsilon(sample_rate, noise_multiplier, steps, delta, orders=DEFAULT_ORDERS, conversion="tight"):
    """epsilon of DP-SGD after `steps` Poisson-sampled steps (the one call most people need)."""
    rdp = compute_rdp(sample_rate, noise_multiplier, steps, orders)
    return rdp_to_epsilon(orders, rdp, delta, conversion)[0]


class RDPAccountant:
    """Keeps the RDP spent so far: accountant.step(q, sigma) per step, accountant.epsilon(delta)."""

    def __init__(self, orders=DEFAULT_ORDERS):
        self.orders = tuple(float(a) for a in _check_orders(orders, "RDPAccountant"))
        self.rdp = np.zeros(len(self.orders))
        self.steps = 0
        self._cache = {}                      # (q, sigma) -> one step's RDP, computed once

    def step(self, sample_rate, noise_multiplier, n=1):
        key = (float(sample_rate), float(noise_multiplier))
        if key not in self._cache:
            self._cache[key] = rdp_sampled_gaussian(*key, self.orders)
        self.rdp = self.rdp + n * self._cache[key]
        self.steps += n

    def epsilon(self, delta, conversion="tight"):
        return rdp_to_epsilon(self.orders, self.rdp, delta, conversion)[0]
