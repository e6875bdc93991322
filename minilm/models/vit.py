"""The same Transformer blocks on images: the Vision Transformer (Dosovitskiy et al. 2021, "An Image is
Worth 16x16 Words: Transformers for Image Recognition at Scale", ICLR 2021).

An image becomes a sequence by cutting it into a grid of p x p patches and
flattening each patch into a vector; a Linear layer embeds each vector
(section 3.1, eq. 1), exactly as a token embedding would:

    images (B, C, H, W) -> patches (B, N, C*p*p), N = (H/p)(W/p), row-major over the grid
    z0 = [x_cls; patches W_E^T + b_E] + E_pos          (B, N+1, D)   learned positions
    zL = TransformerBlock^L(z0)                          no causal mask: every patch sees every patch
    y  = Linear(LayerNorm(zL[:, 0]))                     the [CLS] token's vector -> class logits

Cutting into patches is only a reshape and a transpose, so its gradient is the
inverse reshape; a Linear layer on the flattened patches computes exactly what
a Conv2d with kernel_size = stride = p computes (the patch vector is ordered
(channel, row, column), the order of a Conv2d weight's last three axes).

Apart from the patches, nothing here is specific to images: the blocks are
minilm's one nn.TransformerBlock, pre-LN as in the paper's eq. 2-3. Unlike a
CNN, the model is told nothing about which patches are neighbours; the
learned position vectors must discover the 2-D grid from data. The paper's
point is that with enough data that does not matter; on 1,797 8x8 digits it
is the reason a small ViT needs some care (see minilm/apps/digits.py).

ImageEncoder is the part that turns images into a sequence of vectors; with
pool=None it returns one vector per patch, which is the `memory` a text
decoder can cross-attend to (ImageToText: the image-to-text model whose
decoder is the encoder-decoder translator's, minilm.models.seq2seq).
"""
import json
from dataclasses import asdict, dataclass

import numpy as np

from minilm.nn import functional as F
from minilm.nn.layers import LayerNorm, Linear
from minilm.nn.module import Module, ModuleList, Parameter
from minilm.nn.transformer_block import TransformerBlock
from minilm.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from minilm.random import default_generator
from minilm.tensor import Tensor
from minilm.tensor_functions import cat


def _pair(size, where, name):
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or any(int(s) <= 0 for s in pair):
        raise ValueError(f"{where}: {name} must be a positive int or (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


def as_images(images, in_channels, where="as_images", dtype=np.float32):
    """images as a Tensor of shape (B, C, H, W); (B, H, W) is accepted when in_channels == 1.

    Arrays and lists are converted to `dtype` (the model's: uint8 pixels or float64 arrays would
    otherwise make a float32 model compute in another precision); Tensors are used as they are.
    """
    if not isinstance(images, Tensor):
        arr = np.asarray(images)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"{where}: images must be numbers, got dtype {arr.dtype}")
        images = Tensor(arr.astype(dtype))
    if images.ndim == 3:
        if in_channels != 1:
            raise ValueError(f"{where}: images of shape {images.shape} have no channel axis, but the model "
                             f"expects {in_channels} channels; pass (batch, channels, height, width)")
        images = images.unsqueeze(1)                                        # (B, H, W) -> (B, 1, H, W)
    if images.ndim != 4:
        raise ValueError(f"{where}: images must have shape (batch, height, width) or (batch, channels, "
                         f"height, width), got shape {images.shape}"
                         f"{' (add a batch axis: images[None])' if images.ndim == 2 else ''}")
    if images.shape[1] != in_channels:
        raise ValueError(f"{where}: images of shape {images.shape} have {images.shape[1]} channels, "
                         f"the model expects {in_channels}")
    return images


def patchify(images, patch_size, where="patchify"):
    """(B, C, H, W) Tensor -> (B, N, C*ph*pw) patches, row-major over the (H/ph, W/pw) grid.

    patch n = (row r, column c) of the grid holds images[:, :, r*ph:(r+1)*ph, c*pw:(c+1)*pw],
    flattened in (channel, row, column) order. Differentiable: it is reshapes and a permute.
    """
    ph, pw = _pair(patch_size, where, "patch_size")
    b, ch, h, w = images.shape
    if h % ph or w % pw:
        raise ValueError(f"{where}: image size {h}x{w} is not divisible by the patch size {ph}x{pw}; "
                         f"crop or pad the images, or choose a patch size that divides both")
    gh, gw = h // ph, w // pw
    x = images.reshape(b, ch, gh, ph, gw, pw)                              # split each axis into (grid, inside)
    x = x.permute(0, 2, 4, 1, 3, 5)                                         # (B, gh, gw, C, ph, pw)
    return x.reshape(b, gh * gw, ch * ph * pw)                              # (B, N, patch_dim)


class PatchEmbedding(Module):
    """PatchEmbedding(image_size, patch_size, in_channels=1, embed_dim=64, generator=None).

    images (B, H, W) or (B, C, H, W) -> (B, N, embed_dim): cut into patches (patchify), then one
    Linear(C*p*p, embed_dim) applied to every patch (= Conv2d(C, embed_dim, p, stride=p)).
    The image size is fixed at construction because the model's position table has one row per patch.
    """

    def __init__(self, image_size, patch_size, in_channels=1, embed_dim=64, generator=None):
        super().__init__()
        self.image_size = _pair(image_size, "PatchEmbedding", "image_size")
        self.patch_size = _pair(patch_size, "PatchEmbedding", "patch_size")
        (h, w), (ph, pw) = self.image_size, self.patch_size
        if h % ph or w % pw:
            raise ValueError(f"PatchEmbedding: image size {h}x{w} is not divisible by the patch size {ph}x{pw}")
        self.in_channels, self.embed_dim = int(in_channels), int(embed_dim)
        self.grid = (h // ph, w // pw)
        self.num_patches = self.grid[0] * self.grid[1]
        self.proj = Linear(self.in_channels * ph * pw, self.embed_dim, generator=generator)

    def forward(self, images):
        x = as_images(images, self.in_channels, "PatchEmbedding", self.proj.weight.dtype)
        if tuple(x.shape[2:]) != self.image_size:
            raise ValueError(f"PatchEmbedding: images are {x.shape[2]}x{x.shape[3]}, this embedding was built "
                             f"for {self.image_size[0]}x{self.image_size[1]}")
        return self.proj(patchify(x, self.patch_size, "PatchEmbedding"))   # (B, N, p*p*C) -> (B, N, D)

    def extra_repr(self):
        return (f"image_size={self.image_size}, patch_size={self.patch_size}, in_channels={self.in_channels}, "
                f"embed_dim={self.embed_dim}")


@dataclass
class ViTConfig:
    """Sizes of a ViT. pool: "cls" (a learned [CLS] token, as in the paper) or "mean" (mean of patches).

    num_classes is used by ViTClassifier only.
    """

    image_size: int = 8
    patch_size: int = 2
    in_channels: int = 1
    num_classes: int = 10
    d_model: int = 64
    nhead: int = 4
    num_layers: int = 2
    dim_feedforward: int = 128
    dropout: float = 0.0
    pool: str = "cls"
    activation: str = "gelu"

    def __post_init__(self):
        for name in ("in_channels", "num_classes", "d_model", "nhead", "num_layers", "dim_feedforward"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"ViTConfig: {name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.nhead:
            raise ValueError(f"ViTConfig: d_model={self.d_model} is not divisible by nhead={self.nhead}")
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"ViTConfig: pool must be 'cls' or 'mean', got {self.pool!r}")
        if isinstance(self.image_size, list):
            self.image_size = tuple(self.image_size)                        # from JSON
        if isinstance(self.patch_size, list):
            self.patch_size = tuple(self.patch_size)

    def to_json(self):
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))


class ImageEncoder(Module):
    """ImageEncoder(config, cls_token=True, generator=None): images -> one vector per token.

    forward(images) -> (B, N+1, D) with the [CLS] token first, or (B, N, D) with cls_token=False:
    patch embedding, + learned positions, a stack of non-causal pre-LN TransformerBlocks, a final
    LayerNorm. need_weights=True also returns each block's self-attention probabilities.
    """

    def __init__(self, config, cls_token=True, generator=None):
        super().__init__()
        if not isinstance(config, ViTConfig):
            raise TypeError(f"ImageEncoder: expected a ViTConfig, got {type(config).__name__}")
        gen = generator if generator is not None else default_generator()
        self.config = cfg = config
        c = cfg.d_model
        self.patch_embed = PatchEmbedding(cfg.image_size, cfg.patch_size, cfg.in_channels, c, generator=gen)
        n_tokens = self.patch_embed.num_patches + (1 if cls_token else 0)
        # small random starts (the paper's and timm's choice: std 0.02): the patches, not the
        # positions, should dominate the first block's input
        self.cls_token = Parameter((gen.standard_normal((1, 1, c)) * 0.02).astype(np.float32)) if cls_token else None
        self.pos_embed = Parameter((gen.standard_normal((1, n_tokens, c)) * 0.02).astype(np.float32))
        self.layers = ModuleList(TransformerBlock(c, cfg.nhead, cfg.dim_feedforward, dropout=cfg.dropout,
                                                  activation=cfg.activation, norm_first=True, causal=False,
                                                  generator=gen) for _ in range(cfg.num_layers))
        self.norm = LayerNorm(c)

    def forward(self, images, need_weights=False):
        x = self.patch_embed(images)                                        # (B, N, D)
        if self.cls_token is not None:
            # the [CLS] vector is the same for every image; adding zeros broadcasts it to (B, 1, D)
            cls = self.cls_token + Tensor(np.zeros((x.shape[0], 1, 1), dtype=x.dtype))
            x = cat([cls, x], axis=1)                                       # (B, N+1, D)
        x = x + self.pos_embed
        weights = []
        for layer in self.layers:
            x = layer(x, need_weights=need_weights)
            if need_weights:
                x, w = x
                weights.append(w.numpy())
        x = self.norm(x)
        return (x, weights) if need_weights else x


class ViTClassifier(Module):
    """ViTClassifier(config, generator=None): images (B, [C,] H, W) -> logits (B, num_classes).

    logits = model(images); logits, loss = model(images, labels=labels)
    The [CLS] token's final vector (pool="cls") or the mean of the patch vectors (pool="mean")
    goes through one Linear head (the paper's fine-tuning head).
    """

    def __init__(self, config, generator=None):
        super().__init__()
        gen = generator if generator is not None else default_generator()
        self.config = config
        self.encoder = ImageEncoder(config, cls_token=config.pool == "cls", generator=gen)
        self.head = Linear(config.d_model, config.num_classes, generator=gen)

    def forward(self, images, labels=None):
        x = self.encoder(images)                                            # (B, T, D)
        pooled = x[:, 0] if self.config.pool == "cls" else x.mean(axis=1)   # (B, D)
        logits = self.head(pooled)                                          # (B, num_classes)
        if labels is None:
            return logits
        y = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
        if y.shape != (logits.shape[0],) or y.dtype.kind not in "iu":
            raise ValueError(f"ViTClassifier: labels must be {logits.shape[0]} integer class ids, "
                             f"got shape {y.shape}, dtype {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= self.config.num_classes):
            raise IndexError(f"ViTClassifier: labels must lie in [0, {self.config.num_classes}), "
                             f"got {int(y.min())}..{int(y.max())}")
        return logits, F.cross_entropy(logits, y)

    def extra_repr(self):
        cfg = self.config
        return f"d_model={cfg.d_model}, nhead={cfg.nhead}, layers={cfg.num_layers}, pool={cfg.pool!r}"


class ImageToText(Module):
    """ImageToText(vit_config, vocab_size, num_decoder_layers=1, max_len=16, generator=None).

    An image encoder (ImageEncoder without [CLS]: one memory vector per patch) and the
    translator's decoder (minilm.models.seq2seq.Seq2SeqTransformer.decode: token embeddings +
    sinusoids, causal self-attention, cross-attention over the memory, a final LayerNorm and a
    vocabulary head). The decoder is reused unchanged: a Seq2SeqTransformer with no encoder layers,
    whose 1-row source embedding and encoder LayerNorm are left unused.

    memory = model.encode(images); logits = model.decode(tgt_in, memory)
    logits, loss = model(images, tgt_in, targets=targets)     targets -100 = padding
    """

    def __init__(self, vit_config, vocab_size, num_decoder_layers=1, max_len=16, generator=None):
        super().__init__()
        gen = generator if generator is not None else default_generator()
        self.config = vit_config
        self.encoder = ImageEncoder(vit_config, cls_token=False, generator=gen)
        self.text_config = Seq2SeqConfig(src_vocab_size=1, tgt_vocab_size=vocab_size, d_model=vit_config.d_model,
                                         nhead=vit_config.nhead, num_encoder_layers=0,
                                         num_decoder_layers=num_decoder_layers,
                                         dim_feedforward=vit_config.dim_feedforward, dropout=vit_config.dropout,
                                         max_len=max_len, activation=vit_config.activation)
        self.decoder = Seq2SeqTransformer(self.text_config, generator=gen)

    def encode(self, images):
        """images -> memory (B, N, D), one vector per patch, row-major over the patch grid."""
        return self.encoder(images)

    def decode(self, tgt_in, memory, need_weights=False):
        """tgt_in (B, T) ids, memory (B, N, D) -> logits (B, T, V) [, cross-attention list of (B, nh, T, N)]."""
        return self.decoder.decode(tgt_in, memory, None, need_weights=need_weights)

    def forward(self, images, tgt_in, targets=None):
        logits = self.decode(tgt_in, self.encode(images))
        if targets is None:
            return logits
        tgt = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
        if tgt.shape != logits.shape[:2]:
            raise ValueError(f"ImageToText.forward: targets of shape {tgt.shape} must match tgt_in "
                             f"{tuple(logits.shape[:2])}")
        return logits, F.cross_entropy(logits, tgt.astype(np.int64), ignore_index=-100)
