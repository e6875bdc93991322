"""The basic layers: Linear, Embedding, LayerNorm, Dropout, activations."""
import math

import numpy as np

from minilm.nn import functional as F
from minilm.nn.module import Module, Parameter
from minilm.random import default_generator


def _uniform(gen, shape, bound, dtype=np.float32):
    return gen.uniform(-bound, bound, size=shape).astype(dtype)


class Linear(Module):
    """y = x W^T + b, W of shape (out_features, in_features) as in PyTorch.

    Initialised like PyTorch: W and b ~ U(-1/sqrt(in), 1/sqrt(in)).
    """

    def __init__(self, in_features, out_features, bias=True, generator=None):
        super().__init__()
        gen = generator if generator is not None else default_generator()
        bound = 1.0 / math.sqrt(in_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_uniform(gen, (out_features, in_features), bound))
        self.bias = Parameter(_uniform(gen, (out_features,), bound)) if bias else None

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: expected input with last dimension {self.in_features}, "
                             f"got shape {x.shape}")
        return F.linear(x, self.weight, self.bias)          # (..., in) -> (..., out)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table of num_embeddings vectors; weight ~ N(0, 1) as in PyTorch."""

    def __init__(self, num_embeddings, embedding_dim, generator=None, std=1.0):
        super().__init__()
        gen = generator if generator is not None else default_generator()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter((gen.standard_normal((num_embeddings, embedding_dim)) * std).astype(np.float32))

    def forward(self, ids):
        return F.embedding(ids, self.weight)                 # (...,) -> (..., C)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Normalise each vector over its last axis, then scale and shift (weight=1, bias=0 at start).

    bias=False keeps only the scale (GPT configs without biases), as in torch.nn.LayerNorm.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        self.normalized_shape = int(normalized_shape if isinstance(normalized_shape, int) else normalized_shape[0])
        self.eps = eps
        self.weight = Parameter(np.ones(self.normalized_shape, np.float32)) if elementwise_affine else None
        has_bias = elementwise_affine and bias
        self.bias = Parameter(np.zeros(self.normalized_shape, np.float32)) if has_bias else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


class Dropout(Module):
    """Active only in training mode (module.train()); uses its own seeded generator if given."""

    def __init__(self, p=0.5, generator=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p, self.generator = p, generator

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.generator)

    def extra_repr(self):
        return f"p={self.p}"


class GELU(Module):
    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Identity(Module):
    def forward(self, x):
        return x
