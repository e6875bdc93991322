"""The one place where the kernels' output arrays are allocated, so tests can poison them.

Every public wrapper in this package allocates its outputs with `empty()` and hands them to the
compiled kernel, which must write every element.  Inside `poisoned_outputs()` the arrays come back
filled with NaN (floats) or a sentinel (integers) instead of whatever memory np.empty recycled, so
an element the kernel forgot to write shows up as a NaN in the result and fails the test.
"""
import contextlib
import threading

import numpy as np

INT_POISON = -123456789
_state = threading.local()


def empty(shape, dtype=np.float32):
    """np.empty(shape, dtype), or a poisoned array inside `poisoned_outputs()`."""
    out = np.empty(shape, dtype)
    if getattr(_state, "poison", False):
        out.fill(np.nan if np.issubdtype(out.dtype, np.floating) else INT_POISON)
    return out


@contextlib.contextmanager
def poisoned_outputs():
    """Context manager (per thread): outputs allocated inside it start as NaN instead of garbage."""
    previous = getattr(_state, "poison", False)
    _state.poison = True
    try:
        yield
    finally:
        _state.poison = previous
