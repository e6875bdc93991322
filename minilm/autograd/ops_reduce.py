"""Reductions over axes: sum, mean, max, var (each with keepdims)."""
from minilm.autograd.function import Function


def normalize_axes(op, axis, ndim):
    """Turn axis=None / int / tuple into a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(a % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out))


def expand_reduced(g, shape, axes):
    """Re-insert the reduced axes (size 1) so `g` broadcasts against the input."""
    kept_shape = tuple(1 if i in axes else n for i, n in enumerate(shape))
    return g.reshape(kept_shape)


class Sum(Function):
    def forward(self, x, axis=None, keepdims=False):
        self.shape = x.shape
        self.axes = normalize_axes("sum", axis, x.ndim)
        return x.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        # every element contributed with weight 1
        return (self.xp.broadcast_to(expand_reduced(g, self.shape, self.axes), self.shape),)


class Mean(Function):
    def forward(self, x, axis=None, keepdims=False):
        self.shape = x.shape
        self.axes = normalize_axes("mean", axis, x.ndim)
        self.count = 1
        for a in self.axes:
            self.count *= x.shape[a]
        return x.mean(axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        g = expand_reduced(g, self.shape, self.axes) / self.count
        return (self.xp.broadcast_to(g, self.shape),)


class Max(Function):
    """max over axes. Ties share the gradient equally (like torch.amax)."""

    def forward(self, x, axis=None, keepdims=False):
        if x.size == 0:
            raise ValueError(f"max: cannot reduce an empty tensor of shape {tuple(x.shape)}")
        self.shape = x.shape
        self.axes = normalize_axes("max", axis, x.ndim)
        out = x.max(axis=self.axes, keepdims=True)
        is_max = x == out
        self.weights = is_max / is_max.sum(axis=self.axes, keepdims=True)
        return out if keepdims else out.reshape([n for i, n in enumerate(x.shape) if i not in self.axes])

    def backward(self, g):
        return (expand_reduced(g, self.shape, self.axes) * self.weights,)


class Var(Function):
    """Variance: sum((x - mean)^2) / (N - correction). correction=1 is PyTorch's default.

    d var / d x_i = 2 (x_i - mean) / (N - correction)  (the mean's own dependence on
    x_i cancels because sum(x - mean) = 0).
    """

    def forward(self, x, axis=None, keepdims=False, correction=1):
        self.shape = x.shape
        self.axes = normalize_axes("var", axis, x.ndim)
        n = 1
        for a in self.axes:
            n *= x.shape[a]
        self.denominator = n - correction
        if self.denominator <= 0:
            raise ValueError(f"var: {n} elements with correction={correction} leave no degrees of freedom")
        self.centered = x - x.mean(axis=self.axes, keepdims=True)
        out = (self.centered * self.centered).sum(axis=self.axes, keepdims=keepdims) / self.denominator
        return out.astype(x.dtype, copy=False)

    def backward(self, g):
        g = expand_reduced(g, self.shape, self.axes)
        return (g * self.centered * (2.0 / self.denominator),)
