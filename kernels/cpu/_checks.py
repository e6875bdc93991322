"""Input checks shared by the public wrappers: clear errors before any compiled code runs.

The kernels compute in float32 only.  A float64 (or other) array raises TypeError: float64 work,
such as gradient checks, belongs to the NumPy reference ops, and silently computing a float64
problem with float32-accurate approximations would be a wrong answer in disguise.
Non-contiguous float32 arrays are accepted and copied to C order.
"""
import numpy as np


def float32_array(op, name, value, ndim=None):
    """`value` as a C-contiguous float32 ndarray, or TypeError/ValueError naming op, argument and shape."""
    arr = np.asarray(value)
    if arr.dtype != np.float32:
        raise TypeError(
            "minilm.kernels.cpu.%s: %s must be float32, got %s with shape %s; the Numba kernels compute "
            "in float32 only (use the NumPy reference ops for float64, e.g. gradient checks)"
            % (op, name, arr.dtype, arr.shape)
        )
    if ndim is not None and arr.ndim != ndim:
        raise ValueError("minilm.kernels.cpu.%s: %s must have %d dimensions, got shape %s"
                         % (op, name, ndim, arr.shape))
    return np.ascontiguousarray(arr)


def same_shape(op, name_a, a, name_b, b):
    """ValueError unless a.shape == b.shape."""
    if a.shape != b.shape:
        raise ValueError("minilm.kernels.cpu.%s: %s has shape %s but %s has shape %s; they must match"
                         % (op, name_a, a.shape, name_b, b.shape))
