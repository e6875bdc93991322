"""`gradcheck`: compare hand-written gradients with central finite differences.

For a function f of tensors, pick a fixed random "upstream gradient" R of
f's output shape and look at the scalar L = sum(f(x) * R). Backprop gives
dL/dx analytically; the numerical estimate for element x_i is

    (L(x_i + eps) - L(x_i - eps)) / (2 eps)      (error O(eps^2))

In float64 with eps ~ 1e-6 the two agree to ~1e-8 when backward is right
(truncation error ~eps^2 = 1e-12, round-off ~1e-16 / eps = 1e-10), hence the
default tolerance atol=1e-8, rtol=1e-6: looser ones let real bugs through
(tanh-GELU's backward with 0.0447 instead of 0.044715 passed atol=1e-5, rtol=1e-3).
"""
import numpy as np

from minilm.autograd.grad_mode import no_grad


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-8, rtol=1e-6, max_elements=None, seed=0):
    """Check fn's backward against finite differences; return True or raise GradcheckError.

    fn: takes the tensors in `inputs` (positionally) and returns a Tensor.
    inputs: a list of Tensors; those with requires_grad=True are checked.
        Use float64: float32 round-off swamps the finite differences.
    max_elements: check at most this many elements per input (a seeded random
        subset), for large inputs.
    The error message names the input, the element index, and both values.
    """
    from minilm.tensor import Tensor                      # minilm.tensor imports the autograd package
    inputs = list(inputs)
    rng = np.random.default_rng(seed)
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.requires_grad and x.dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} has dtype {x.dtype}; use float64 "
                            f"(finite differences are meaningless in float32)")

    out = fn(*inputs)
    upstream = rng.standard_normal(out.shape)
    for x in inputs:
        if isinstance(x, Tensor):
            x.grad = None
    out.backward(upstream.astype(out.dtype))
    analytic = [x.grad.copy() if isinstance(x, Tensor) and x.grad is not None else None for x in inputs]

    def loss():
        with no_grad():
            return float((np.asarray(fn(*inputs).numpy(), dtype=np.float64) * upstream).sum())

    for i, x in enumerate(inputs):
        if not (isinstance(x, Tensor) and x.requires_grad):
            continue
        flat = x.data.reshape(-1)           # a view: writing to it perturbs x in place
        picks = np.arange(flat.size)
        if max_elements is not None and flat.size > max_elements:
            picks = np.sort(rng.choice(flat.size, size=max_elements, replace=False))
        grad = analytic[i]
        grad_flat = np.zeros(flat.size) if grad is None else np.asarray(grad).reshape(-1)
        for j in picks:
            original = flat[j]
            flat[j] = original + eps
            plus = loss()
            flat[j] = original - eps
            minus = loss()
            flat[j] = original
            numeric = (plus - minus) / (2 * eps)
            if not abs(grad_flat[j] - numeric) <= atol + rtol * abs(numeric):
                index = np.unravel_index(j, x.shape) if x.shape else ()
                raise GradcheckError(
                    f"gradcheck: input {i} (shape {x.shape}) at index {tuple(int(k) for k in index)}: "
                    f"analytic gradient {grad_flat[j]:.10g} != numerical {numeric:.10g} "
                    f"(|diff| {abs(grad_flat[j] - numeric):.3g}, tolerance {atol + rtol * abs(numeric):.3g})")
    return True
