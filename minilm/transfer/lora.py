"""LoRA (Hu et al. 2021): train a low-rank change to a frozen weight instead of the weight itself.

A frozen Linear computes y = x W^T + b with W of shape (out, in). LoRA adds a trainable
rank-r product to chosen rows of W (here: the query and value parts of attention's in_proj):

    W' = W + (alpha / r) B A            A: (r, in), B: (out_part, r), r << in

    y = x W^T + b + (alpha / r) (x A^T) B^T

Only A and B train: 2 r C numbers per target instead of C^2. B starts at zero, so training
starts from exactly the pretrained model; A starts random (PyTorch's Linear init, as PEFT does)
so the first gradient of B is not zero. After training, `merge_lora` folds B A into W and the
adapted model costs nothing extra at inference.
"""
import math

import numpy as np

from minilm.nn import functional as F
from minilm.nn.layers import Linear
from minilm.nn.module import Module, Parameter
from minilm.tensor_functions import cat

# Which rows of in_proj's (3C, C) weight each target owns: q = rows [0, C), k = [C, 2C), v = [2C, 3C).
TARGETS = ("query", "key", "value")


class LoRALinear(Module):
    """A frozen `base` Linear plus rank-`rank` adapters on some row blocks of its weight.

    parts: {name: (start, stop)} output rows each adapter changes, e.g. {"query": (0, C), "value": (2C, 3C)}.
    """

    def __init__(self, base, parts, rank=8, alpha=16.0, generator=None):
        super().__init__()
        if not isinstance(base, Linear):
            raise TypeError(f"LoRALinear: base must be a Linear, got {type(base).__name__}")
        if rank < 1:
            raise ValueError(f"LoRALinear: rank must be >= 1, got {rank}")
        gen = generator if generator is not None else np.random.default_rng(0)
        self.base, self.rank, self.alpha, self.scaling = base, int(rank), float(alpha), float(alpha) / rank
        base.requires_grad_(False)
        self.parts = dict(sorted(parts.items(), key=lambda kv: kv[1][0]))
        bound = 1.0 / math.sqrt(base.in_features)
        for name, (start, stop) in self.parts.items():
            if not 0 <= start < stop <= base.out_features:
                raise ValueError(f"LoRALinear: rows {start}:{stop} of {name} are outside the weight's "
                                 f"{base.out_features} rows")
            a = gen.uniform(-bound, bound, (rank, base.in_features)).astype(base.weight.dtype)
            setattr(self, f"lora_A_{name}", Parameter(a))                                       # (r, in)
            setattr(self, f"lora_B_{name}", Parameter(np.zeros((stop - start, rank), base.weight.dtype)))  # (out_part, r)

    @property
    def in_features(self):
        return self.base.in_features

    @property
    def out_features(self):
        return self.base.out_features

    def delta_weight(self):
        """The (out, in) array that merging adds to the base weight: scaling * B A on each part's rows."""
        w = np.zeros_like(self.base.weight.data)
        for name, (start, stop) in self.parts.items():
            a, b = getattr(self, f"lora_A_{name}").data, getattr(self, f"lora_B_{name}").data
            w[start:stop] = self.scaling * (b @ a)
        return w

    def forward(self, x):
        y = self.base(x)                                                        # (..., out), frozen
        pieces, row = [], 0
        for name, (start, stop) in self.parts.items():
            if start > row:                                                     # rows no adapter touches
                pieces.append(np.zeros(x.shape[:-1] + (start - row,), y.dtype))
            a, b = getattr(self, f"lora_A_{name}"), getattr(self, f"lora_B_{name}")
            pieces.append(F.linear(F.linear(x, a) * self.scaling, b))          # (..., in) -> (..., r) -> (..., part)
            row = stop
        if row < self.out_features:
            pieces.append(np.zeros(x.shape[:-1] + (self.out_features - row,), y.dtype))
        return y + cat(pieces, axis=-1)

    def merged(self):
        """A plain Linear with W + scaling * B A: the same function, no adapter cost."""
        base = self.base
        out = Linear(base.in_features, base.out_features, bias=base.bias is not None)
        out.weight.data = base.weight.data + self.delta_weight()
        if base.bias is not None:
            out.bias.data = base.bias.data.copy()
        return out

    def extra_repr(self):
        return f"rank={self.rank}, alpha={self.alpha}, parts={list(self.parts)}"


def add_lora(encoder, rank=8, alpha=16.0, targets=("query", "value"), generator=None):
    """Freeze `encoder` (a BertModel or any stack of TransformerBlocks) and wrap each block's
    attention in_proj in a LoRALinear on the `targets` among query, key and value. In place;
    returns the encoder."""
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise ValueError(f"add_lora: targets must be a non-empty subset of {TARGETS}, got {tuple(targets)}")
    encoder.requires_grad_(False)
    for block in encoder.blocks:
        attn = block.self_attn
        if isinstance(attn.in_proj, LoRALinear):
            raise ValueError("add_lora: this model already has LoRA adapters")
        c = attn.in_proj.in_features
        parts = {t: (TARGETS.index(t) * c, (TARGETS.index(t) + 1) * c) for t in targets}
        attn.in_proj = LoRALinear(attn.in_proj, parts, rank, alpha, generator)
    return encoder


def merge_lora(encoder):
    """Fold every LoRALinear of `encoder` into a plain Linear (in place); returns the encoder."""
    for block in encoder.blocks:
        attn = block.self_attn
        if isinstance(attn.in_proj, LoRALinear):
            attn.in_proj = attn.in_proj.merged()
    return encoder
