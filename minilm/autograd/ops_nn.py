"""Neural-network ops with hand-written backward passes.

Each is one formula; composing them from smaller ops would also work but
would keep more intermediate arrays alive and be slower.
"""
import numpy as np

from minilm.autograd.function import Function
from minilm.backend import get_kernel


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
        if self.xp is np:
            np.add.at(grad, flat_ids, flat_g)
        else:
            import cupyx
            cupyx.scatter_add(grad, flat_ids, flat_g)
        return None, grad


class Softmax(Function):
    """y = exp(x - max) / sum(exp(x - max));  dx = y * (g - sum(g * y))."""

    def forward(self, x, axis=-1):
        xp = self.xp
        shifted = x - x.max(axis=axis, keepdims=True)
        e = xp.exp(shifted)
        self.y, self.axis = e / e.sum(axis=axis, keepdims=True), axis
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
        if logits.ndim != 2 or targets.shape != logits.shape[:1]:
            raise ValueError(f"cross_entropy: expected logits (N, V) and targets (N,), got "
                             f"{tuple(logits.shape)} and {tuple(targets.shape)}")
        if targets.dtype.kind not in "iu":
            raise TypeError(f"cross_entropy: targets must be integers, got dtype {targets.dtype}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing}")
        n, v = logits.shape
        counted = targets != ignore_index
        bad = counted & ((targets < 0) | (targets >= v))
        if bool(bad.any()):
            raise IndexError(f"cross_entropy: target {int(targets[bad][0])} is outside [0, {v}) "
                             f"(and is not ignore_index={ignore_index})")
        self.n_counted = int(counted.sum())
        self.targets, self.counted, self.eps = targets, counted, label_smoothing
        self.ignore_index = ignore_index
        kernel = get_kernel("cross_entropy_forward", logits) if label_smoothing == 0.0 else None
        self.kernel_backward = get_kernel("cross_entropy_backward", logits) if kernel is not None else None
        if kernel is not None:
            loss_sum, _, self.lse = kernel(logits, targets, ignore_index=ignore_index)
            self.logits = logits
            return xp.asarray(loss_sum / max(self.n_counted, 1), dtype=logits.dtype)
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
        if self.kernel_backward is not None:
            dlogits = self.kernel_backward(self.logits, self.targets, self.lse, float(scale),
                                           ignore_index=self.ignore_index)
            return dlogits, None
        grad = xp.exp(self.logp)                                  # softmax, (N, V)
        n = grad.shape[0]
        safe_targets = xp.where(self.counted, self.targets, 0)
        grad[xp.arange(n), safe_targets] -= (1 - self.eps)
        if self.eps:
            grad -= self.eps / grad.shape[1]
        grad *= (scale * self.counted)[:, None]
        return grad, None


class LayerNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis (Ba et al. 2016).

    With xhat = (x - mean) * rstd and dxhat = dy * weight, the input gradient is
        dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    (means over the normalised axis), dweight = sum(dy * xhat), dbias = sum(dy).
    """

    def forward(self, x, weight, bias, eps=1e-5):
        c = x.shape[-1]
        for name, p in (("weight", weight), ("bias", bias)):
            if p is not None and tuple(p.shape) != (c,):
                raise ValueError(f"layer_norm: {name} of shape {tuple(p.shape)} does not match the "
                                 f"last dimension {c} of the input of shape {tuple(x.shape)}")
        self.has_weight, self.has_bias = weight is not None, bias is not None
        xp = self.xp
        kernel = get_kernel("layer_norm_forward", x) if (weight is not None and bias is not None) else None
        self.kernel_backward = get_kernel("layer_norm_backward", x) if kernel is not None else None
        if kernel is not None:
            y, self.mean, self.rstd = kernel(x, weight, bias, eps)
            self.x, self.weight = x, weight
            return y
        centered, var = _centered_and_variance(x, xp)
        rstd = 1.0 / xp.sqrt(var + eps)
        self.xhat = (centered * rstd).astype(x.dtype, copy=False)
        self.rstd, self.weight = rstd.astype(x.dtype, copy=False), weight
        y = self.xhat * weight if weight is not None else self.xhat.copy()
        if bias is not None:
            y += bias
        return y.astype(x.dtype, copy=False)

    def backward(self, g):
        if self.kernel_backward is not None:
            return self.kernel_backward(g, self.x, self.weight, self.mean, self.rstd)
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
