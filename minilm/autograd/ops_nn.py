"""Neural-network ops with hand-written backward passes.

Each is one formula; composing them from smaller ops would also work but
would keep more intermediate arrays alive and be slower.
"""
import numpy as np

from minilm.autograd.function import Function
from minilm.autograd.ops_shape import scatter_add


class Embedding(Function):
    """out[..., :] = weight[ids[...], :]; backward adds each row's gradient into weight."""

    def forward(self, ids, weight):
        if ids.dtype.kind not in "iu":
            raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}")
        vocab = weight.shape[0]
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            bad = int(ids.max()) if int(ids.max()) >= vocab else int(ids.min())
            raise IndexError(f"embedding: token id {bad} is outside the vocabulary "
                             f"[0, {vocab}) of the weight of shape {tuple(weight.shape)}")
        self.ids, self.weight_shape = ids, weight.shape
        return weight[ids]                                   # (..., ) -> (..., C)

    def backward(self, g):
        grad = self.xp.zeros(self.weight_shape, dtype=g.dtype)
        flat_ids = self.ids.reshape(-1)                      # (N,)
        flat_g = g.reshape(-1, self.weight_shape[1])         # (..., C) -> (N, C)
        scatter_add(self.xp, grad, flat_ids, flat_g)         # a token seen twice gets both rows
        return None, grad


class Softmax(Function):
    """y = exp(x - max) / sum(exp(x - max));  dx = y * (g - sum(g * y)).

    A row that is -inf everywhere (attention where a query may see no key)
    gives zeros, not 0/0 = NaN: such a row has no distribution to speak of,
    and zeros pass no gradient back.
    """

    def forward(self, x, axis=-1):
        xp = self.xp
        row_max = x.max(axis=axis, keepdims=True)
        row_max = xp.where(xp.isfinite(row_max), row_max, 0)      # an all -inf row: exp(-inf) = 0
        e = xp.exp(x - row_max)
        total = e.sum(axis=axis, keepdims=True)
        self.y, self.axis = e / xp.where(total > 0, total, 1), axis
        return self.y

    def backward(self, g):
        y = self.y
        return (y * (g - (g * y).sum(axis=self.axis, keepdims=True)),)


class LogSoftmax(Function):
    """y = x - logsumexp(x);  dx = g - softmax(x) * sum(g)."""

    def forward(self, x, axis=-1):
        xp = self.xp
        shifted = x - x.max(axis=axis, keepdims=True)
        self.y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.axis = axis
        return self.y

    def backward(self, g):
        return (g - self.xp.exp(self.y) * g.sum(axis=self.axis, keepdims=True),)


class CrossEntropy(Function):
    """Mean negative log-likelihood of integer targets under softmax(logits).

    logits (N, V), targets (N,). Rows whose target equals ignore_index are
    left out, and the mean is over the rows that count. With label smoothing
    eps the target distribution is (1 - eps) * onehot + eps / V, so

        loss_i = -(1 - eps) log p[i, t_i] - (eps / V) sum_v log p[i, v]
        dloss_i/dlogits_i = softmax_i - (1 - eps) onehot(t_i) - eps / V
    """

    def forward(self, logits, targets, ignore_index=-100, label_smoothing=0.0):
        xp = self.xp
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing}")
        counted = counted_targets(logits, targets, ignore_index)
        n = logits.shape[0]
        self.n_counted = int(counted.sum())
        self.targets, self.counted, self.eps = targets, counted, label_smoothing
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))      # (N, V)
        safe_targets = xp.where(counted, targets, 0)
        nll = -logp[xp.arange(n), safe_targets]                                    # (N,)
        if label_smoothing:
            nll = (1 - label_smoothing) * nll - label_smoothing * logp.mean(axis=1)
        self.logp = logp
        loss = (nll * counted).sum() / max(self.n_counted, 1)
        return xp.asarray(loss, dtype=logits.dtype)

    def backward(self, g):
        xp = self.xp
        scale = g / max(self.n_counted, 1)
        grad = xp.exp(self.logp)                                  # softmax, (N, V)
        n = grad.shape[0]
        safe_targets = xp.where(self.counted, self.targets, 0)
        grad[xp.arange(n), safe_targets] -= (1 - self.eps)
        if self.eps:
            grad -= self.eps / grad.shape[1]
        grad *= (scale * self.counted)[:, None]
        return grad, None


def counted_targets(logits, targets, ignore_index):
    """Check logits (N, V) and integer targets (N,); return the mask of targets that count."""
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy: expected logits (N, V) and targets (N,), got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    if targets.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integers, got dtype {targets.dtype}")
    counted = targets != ignore_index
    bad = counted & ((targets < 0) | (targets >= logits.shape[1]))
    if bool(bad.any()):
        raise IndexError(f"cross_entropy: target {int(targets[bad][0])} is outside [0, {logits.shape[1]}) "
                         f"(and is not ignore_index={ignore_index})")
    return counted


def check_layer_norm_params(x, weight, bias):
    c = x.shape[-1]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != (c,):
            raise ValueError(f"layer_norm: {name} of shape {tuple(p.shape)} does not match the "
                             f"last dimension {c} of the input of shape {tuple(x.shape)}")


class LayerNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis (Ba et al. 2016).

    With xhat = (x - mean) * rstd and dxhat = dy * weight, the input gradient is
        dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    (means over the normalised axis), dweight = sum(dy * xhat), dbias = sum(dy).
    """

    def forward(self, x, weight, bias, eps=1e-5):
        check_layer_norm_params(x, weight, bias)
        self.has_weight, self.has_bias = weight is not None, bias is not None
        xp = self.xp
        centered, var = _centered_and_variance(x, xp)
        rstd = 1.0 / xp.sqrt(var + eps)
        self.xhat = (centered * rstd).astype(x.dtype, copy=False)
        self.rstd, self.weight = rstd.astype(x.dtype, copy=False), weight
        y = self.xhat * weight if weight is not None else self.xhat.copy()
        if bias is not None:
            y += bias
        return y.astype(x.dtype, copy=False)

    def backward(self, g):
        batch_axes = tuple(range(g.ndim - 1))
        dweight = (g * self.xhat).sum(axis=batch_axes) if self.has_weight else None
        dbias = g.sum(axis=batch_axes) if self.has_bias else None
        dxhat = g * self.weight if self.has_weight else g
        dx = self.rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                          - self.xhat * (dxhat * self.xhat).mean(axis=-1, keepdims=True))
        return dx, dweight, dbias


def _centered_and_variance(x, xp):
    """x - mean and the variance over the last axis, for LayerNorm.

    LayerNorm is scale-invariant, so an input of scale 1e20 is legitimate, but its
    squares (1e40) overflow float32 (max 3.4e38): var would be inf and the output 0.
    Such input is redone in float64 (max 1e308); the check costs one look at the
    (N, 1) variances, so ordinary input pays almost nothing. The Numba and CUDA
    kernels do the same per row, so every backend gives the normalised x.
    """
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    with np.errstate(over="ignore"):                      # an overflow is handled just below
        var = (centered * centered).mean(axis=-1, keepdims=True)
    if x.dtype.itemsize < 8 and not bool(xp.isfinite(var).all()):
        x64 = x.astype(xp.float64)
        centered = x64 - x64.mean(axis=-1, keepdims=True)
        var = (centered * centered).mean(axis=-1, keepdims=True)
    return centered, var


class Dropout(Function):
    """Zero each element with probability p and scale survivors by 1/(1-p) (inverted dropout)."""

    def forward(self, x, p, generator):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout: p must be in [0, 1), got {p}")
        keep = generator.random(x.shape) >= p                      # NumPy Generator
        keep = self.xp.asarray(keep)
        self.scale = (keep / (1.0 - p)).astype(x.dtype)
        return x * self.scale

    def backward(self, g):
        return g * self.scale, None, None
