"""GELU on the GPU: the kernels of gelu.cu behind NumPy-like functions on CuPy arrays.

    gelu_forward(x, approximate="none")     y = 0.5 x (1 + erf(x / sqrt 2))     (exact)
                 approximate="tanh"         y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    gelu_backward(x, dy, approximate)       dx = dy * dGELU/dx

Hendrycks & Gimpel 2016. Any shape; float32. The `*_on(runtime, ...)` forms take the runtime
explicitly (see runtime.py); the plain forms use the CuPy runtime.
"""
import numpy as np

from .runtime import ceil_div, float32_input, get_runtime

SOURCE = "gelu.cu"
THREADS = 256
MAX_BLOCKS = 4096  # the kernels loop (grid-stride), so a bounded grid covers any size
_KIND = {"none": "erf", "tanh": "tanh"}


def _kind(op, approximate):
    if approximate not in _KIND:
        raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _KIND[approximate]


def _grid(n):
    return (min(ceil_div(n, THREADS), MAX_BLOCKS), 1, 1)


def gelu_forward_on(runtime, x, approximate="none"):
    kind = _kind("gelu_forward", approximate)
    x = float32_input(runtime, x, "gelu_forward", "x")
    y = runtime.empty(x.shape)
    runtime.launch(SOURCE, f"gelu_forward_{kind}_kernel", _grid(x.size), (THREADS, 1, 1),
                   (x, y, np.int64(x.size)))
    return y


def gelu_backward_on(runtime, x, dy, approximate="none"):
    kind = _kind("gelu_backward", approximate)
    x = float32_input(runtime, x, "gelu_backward", "x")
    dy = float32_input(runtime, dy, "gelu_backward", "dy")
    if dy.shape != x.shape:
        raise ValueError(f"gelu_backward: dy has shape {tuple(dy.shape)} but x has "
                         f"{tuple(x.shape)}")
    dx = runtime.empty(x.shape)
    runtime.launch(SOURCE, f"gelu_backward_{kind}_kernel", _grid(x.size), (THREADS, 1, 1),
                   (x, dy, dx, np.int64(x.size)))
    return dx


def gelu_forward(x, approximate="none"):
    """GELU of a float32 CuPy array (any shape); approximate "none" (erf) or "tanh"."""
    return gelu_forward_on(get_runtime(), x, approximate)


def gelu_backward(x, dy, approximate="none"):
    """dx = dy * GELU'(x) for float32 CuPy arrays of one shape."""
    return gelu_backward_on(get_runtime(), x, dy, approximate)
