"""`no_grad()`: run ops without recording the graph (inference, optimizer steps).

`enable_grad()` turns recording back on inside a no_grad block. Both restore
the state they found on exit (also after an exception), so they nest.
"""
import functools

_grad_enabled = [True]


def is_grad_enabled():
    return _grad_enabled[0]


class _GradMode:
    """Context manager (and decorator) that sets graph recording to `enabled` inside it."""
    enabled = True

    def __enter__(self):
        self._previous = _grad_enabled[0]
        _grad_enabled[0] = self.enabled

    def __exit__(self, *exc):
        _grad_enabled[0] = self._previous     # the previous state, not True: nested blocks stay off
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Context manager (and decorator) that turns off graph recording.

    Inside it, ops still compute their outputs but remember no inputs, so no
    memory is kept for a backward pass and the outputs have requires_grad=False.
    """
    enabled = False


class enable_grad(_GradMode):
    """Context manager (and decorator) that turns graph recording on, e.g. inside no_grad."""
    enabled = True
