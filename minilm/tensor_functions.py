"""Functions that make tensors or combine several: zeros, randn, cat, stack, split, where."""
import numpy as np

from minilm.autograd import ops_elementwise as ew
from minilm.autograd import ops_shape
from minilm.random import default_generator
from minilm.tensor import Tensor


def tensor(data, requires_grad=False, dtype=None):
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(*shape, dtype=np.float32, requires_grad=False):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(np.zeros(shape, dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype=np.float32, requires_grad=False):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(np.ones(shape, dtype=dtype), requires_grad=requires_grad)


def randn(*shape, generator=None, dtype=np.float32, requires_grad=False):
    """Standard normal samples from a seeded Generator (minilm's own default if none is given)."""
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    gen = generator if generator is not None else default_generator()
    return Tensor(gen.standard_normal(shape).astype(dtype), requires_grad=requires_grad)


def arange(*args, dtype=np.int64):
    return Tensor(np.arange(*args, dtype=dtype))


def _as_tensors(op, tensors):
    if len(tensors) == 0:
        raise ValueError(f"{op}: needs at least one tensor")
    return [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]


def cat(tensors, axis=0, *, dim=None):
    """Join tensors along an existing axis (torch.cat / numpy.concatenate)."""
    return ops_shape.Concatenate.apply(*_as_tensors("cat", tensors), axis=axis if dim is None else dim)


concatenate = cat


def stack(tensors, axis=0, *, dim=None):
    """Join same-shaped tensors along a new axis."""
    return ops_shape.Stack.apply(*_as_tensors("stack", tensors), axis=axis if dim is None else dim)


def split(x, split_size_or_sections, axis=0):
    """Cut x along `axis` into pieces of size `split_size` (an int) or of the listed sizes.

    Each piece is a slice of x, so its gradient flows back through indexing.
    """
    n = x.shape[axis]
    if isinstance(split_size_or_sections, int):
        if split_size_or_sections <= 0:
            raise ValueError(f"split: split size must be positive, got {split_size_or_sections}")
        sizes = [split_size_or_sections] * (n // split_size_or_sections)
        if n % split_size_or_sections:
            sizes.append(n % split_size_or_sections)
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} add up to {sum(sizes)}, but axis {axis} "
                             f"of shape {x.shape} has {n}")
    pieces, start = [], 0
    axis = axis % x.ndim
    for size in sizes:
        index = (slice(None),) * axis + (slice(start, start + size),)
        pieces.append(x[index])
        start += size
    return tuple(pieces)


def where(condition, a, b):
    """Elementwise a where condition is True, else b; gradients flow to a and b only."""
    cond = condition.data if isinstance(condition, Tensor) else condition
    a = a if isinstance(a, Tensor) else Tensor(np.asarray(a, dtype=b.dtype if isinstance(b, Tensor) else None))
    b = b if isinstance(b, Tensor) else Tensor(np.asarray(b, dtype=a.dtype))
    return ew.Where.apply(cond, a, b)
