"""Ops that move data around without arithmetic: reshape, permute, indexing, concat, stack, split."""
import numpy as np

from minilm.autograd.function import Function


class Reshape(Function):
    def forward(self, x, shape):
        self.in_shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {tuple(x.shape)} "
                             f"({x.size} elements) into {tuple(shape)}") from None

    def backward(self, g):
        return (g.reshape(self.in_shape),)


class Permute(Function):
    """Reorder the axes; the gradient goes back through the inverse permutation."""

    def forward(self, x, axes):
        if sorted(a % max(x.ndim, 1) for a in axes) != list(range(x.ndim)):
            raise ValueError(f"permute: {tuple(axes)} is not a permutation of the "
                             f"{x.ndim} axes of a tensor of shape {tuple(x.shape)}")
        self.axes = tuple(a % x.ndim for a in axes)
        return x.transpose(self.axes)

    def backward(self, g):
        return (g.transpose(np.argsort(self.axes)),)


def _is_basic(index):
    """True for an index made of ints and slices only: it reads each element at most once."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice)) or p is None or p is Ellipsis for p in parts)


def scatter_add(xp, target, index, values):
    """target[index] += values, adding repeated indices (np.add.at / cupyx.scatter_add).

    Two fast cases before the general one: a basic index (ints and slices,
    as in split or x[:, -1]) touches each element once, so a plain += is
    exact; a 1-D integer array of row ids (embedding backward, the hot case)
    is summed by sorting the rows by id and adding each run with
    np.add.reduceat, several times faster than np.add.at's one-row-at-a-time
    loop. Both give the same sums (up to float addition order).
    """
    if _is_basic(index):
        target[index] += values
    elif xp is np and isinstance(index, np.ndarray) and index.ndim == 1 and index.dtype.kind in "iu" \
            and values.ndim == target.ndim and len(index) > 0:
        index = np.where(index < 0, index + target.shape[0], index)    # -1 and n-1 are the same row
        order = np.argsort(index, kind="stable")                       # rows with the same id side by side
        ids = index[order]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])      # where each id's run begins
        target[ids[starts]] += np.add.reduceat(values[order], starts, axis=0)
    elif xp is np:
        np.add.at(target, index, values)
    else:
        import cupyx                              # only reachable when CuPy is installed and in use
        cupyx.scatter_add(target, index, values)


class GetItem(Function):
    """x[index]. Backward scatters the gradient back, adding where an element was read twice."""

    def forward(self, x, index):
        self.shape, self.dtype, self.index = x.shape, x.dtype, index
        try:
            return x[index]
        except IndexError as err:
            raise IndexError(f"getitem: index {index!r} is invalid for a tensor of shape "
                             f"{tuple(x.shape)}: {err}") from None

    def backward(self, g):
        grad = self.xp.zeros(self.shape, dtype=g.dtype)
        scatter_add(self.xp, grad, self.index, g)
        return (grad,)


class Concatenate(Function):
    def forward(self, *arrays, axis=0):
        ndim = arrays[0].ndim
        self.axis = axis % ndim
        for a in arrays[1:]:
            if a.ndim != ndim or any(a.shape[i] != arrays[0].shape[i] for i in range(ndim) if i != self.axis):
                raise ValueError(f"cat: shapes {[tuple(t.shape) for t in arrays]} differ outside axis {axis}")
        self.sizes = [a.shape[self.axis] for a in arrays]
        return self.xp.concatenate(arrays, axis=self.axis)

    def backward(self, g):
        cuts = np.cumsum(self.sizes)[:-1].tolist()
        return tuple(self.xp.split(g, cuts, axis=self.axis))


class Stack(Function):
    def forward(self, *arrays, axis=0):
        shapes = {tuple(a.shape) for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
        self.axis = axis
        return self.xp.stack(arrays, axis=axis)

    def backward(self, g):
        n = g.shape[self.axis]
        return tuple(self.xp.take(g, i, axis=self.axis) for i in range(n))
