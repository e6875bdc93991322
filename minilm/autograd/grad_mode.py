"""`no_grad()`: run ops without recording the graph (inference, optimizer steps)."""
import functools

_grad_enabled = [True]


def is_grad_enabled():
    return _grad_enabled[0]


class no_grad:
    """Context manager (and decorator) that turns off graph recording.

    Inside it, ops still compute their outputs but remember no inputs, so no
    memory is kept for a backward pass and the outputs have requires_grad=False.
    """

    def __enter__(self):
        self._previous = _grad_enabled[0]
        _grad_enabled[0] = False

    def __exit__(self, *exc):
        _grad_enabled[0] = self._previous
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)
        return wrapper
