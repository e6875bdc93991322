"""Gradient clipping by the global L2 norm (Pascanu, Mikolov & Bengio 2013).

    total_norm = sqrt( sum over params of sum(g^2) )
    if total_norm > max_norm:   g = g * max_norm / (total_norm + eps)   for every g

All gradients are scaled by the same factor, so the update keeps its
direction and only its length is capped.
"""
import math
import numbers

from minilm.backend import array_module


def clip_grad_norm_(params, max_norm, eps=1e-6):
    """Scale all gradients in place so their global L2 norm is at most max_norm.

    params    an iterable of parameters (objects with .grad; None grads are skipped),
              or one parameter
    max_norm  the largest allowed global norm (> 0)
    eps       added to the norm in the scale factor, max_norm / (total_norm + eps)

    Returns the global norm BEFORE clipping, as a Python float. When that norm
    is not finite (a NaN or inf somewhere in the gradients), the gradients are
    left untouched and the inf/NaN is returned, so the caller (the Trainer) can
    stop with a message instead of silently training on garbage.

    Each gradient's squared norm is a dot product in the gradient's own dtype
    (BLAS for NumPy float32); the per-parameter sums are added in float64.
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real) or not max_norm > 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be a positive number, got {max_norm!r}")
    if hasattr(params, "grad"):
        params = [params]
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total_sq = 0.0
    for g in grads:
        xp = array_module(g)
        flat = g.reshape(-1)
        total_sq += float(xp.vdot(flat, flat).real)
    total_norm = math.sqrt(total_sq)
    if not math.isfinite(total_norm):
        return total_norm
    clip_coef = max_norm / (total_norm + eps)
    if clip_coef < 1.0:
        for g in grads:
            g *= clip_coef
    return total_norm
