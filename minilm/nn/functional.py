"""`minilm.nn.functional` (import as F): the neural-network ops as functions.

The names and arguments follow `torch.nn.functional` where a learner would
expect them. Each function is a thin wrapper over an op in `minilm.autograd`
whose forward and backward are the readable NumPy reference.

This file is also the one place where the reference and the fast version of
an op are chosen: for float32 arrays, if the active backend
(`minilm.set_backend`) has kernels for attention, GELU, LayerNorm or
softmax + cross-entropy, the function applies the fused op of
`minilm.autograd.ops_fused` instead. Both compute the same function; the
reference ops themselves never look at the backend.
"""
import numpy as np

from minilm.autograd import ops_elementwise, ops_fused, ops_matmul, ops_nn
from minilm.backend import array_module, kernel_pair
from minilm.nn import masks
from minilm.random import default_generator
from minilm.tensor import Tensor


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def relu(x):
    return ops_elementwise.ReLU.apply(x)


def gelu(x, approximate="none"):
    """GELU(x) = x * Phi(x); approximate="tanh" uses GPT-2's tanh formula."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    kernels = kernel_pair("gelu", _data(x))
    if kernels is not None:
        return ops_fused.FusedGELU.apply(x, approximate=approximate, kernels=kernels)
    return ops_elementwise.GELU.apply(x, approximate=approximate)


def softmax(x, axis=-1, *, dim=None):
    return ops_nn.Softmax.apply(x, axis=axis if dim is None else dim)


def log_softmax(x, axis=-1, *, dim=None):
    return ops_nn.LogSoftmax.apply(x, axis=axis if dim is None else dim)


def cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0):
    """Mean cross-entropy between softmax(logits) and integer targets.

    logits (..., V) and targets (...): leading axes are flattened, so
    (B, T, V) logits with (B, T) targets work directly. Targets equal to
    ignore_index do not count, and the mean is over the targets that do.
    """
    targets = _data(targets)
    if not isinstance(logits, Tensor):
        logits = Tensor(logits)
    if tuple(targets.shape) != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: logits of shape {logits.shape} need targets of shape "
                         f"{logits.shape[:-1]}, got {tuple(targets.shape)}")
    flat_logits = logits.reshape(-1, logits.shape[-1]) if logits.ndim != 2 else logits  # (..., V) -> (N, V)
    kernels = kernel_pair("cross_entropy", flat_logits.data) if label_smoothing == 0.0 else None
    if kernels is not None:
        return ops_fused.FusedCrossEntropy.apply(flat_logits, targets.reshape(-1), ignore_index=ignore_index,
                                                 kernels=kernels)
    return ops_nn.CrossEntropy.apply(flat_logits, targets.reshape(-1), ignore_index=ignore_index,
                                     label_smoothing=label_smoothing)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last axis (normalized_shape must be (C,) or C)."""
    c = normalized_shape if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if c not in (x.shape[-1], (x.shape[-1],)):
        raise ValueError(f"layer_norm: normalized_shape {normalized_shape} must equal the last "
                         f"dimension of the input of shape {x.shape} (only the last axis is supported)")
    kernels = kernel_pair("layer_norm", _data(x)) if weight is not None and bias is not None else None
    if kernels is not None:
        return ops_fused.FusedLayerNorm.apply(x, weight, bias, eps=eps, kernels=kernels)
    return ops_nn.LayerNorm.apply(x, weight, bias, eps=eps)


def dropout(x, p=0.5, training=True, generator=None):
    """Inverted dropout: identity when not training or p == 0."""
    if not training or p == 0.0:
        return x
    gen = generator if generator is not None else default_generator()
    return ops_nn.Dropout.apply(x, p, gen)


def embedding(ids, weight):
    """Rows of weight picked by integer ids: (...,) -> (..., C)."""
    return ops_nn.Embedding.apply(_data(ids), weight)


def linear(x, weight, bias=None):
    """x @ weight^T + bias, with weight of shape (out_features, in_features) as in PyTorch."""
    return ops_matmul.Linear.apply(x, weight, bias)


def scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, return_weights=False, training=True, generator=None):
    """softmax(q k^T * scale, masked) v for (B, H, T, D) inputs (Vaswani et al. 2017, eq. 1).

    attn_mask: boolean, broadcastable to (B, H, Tq, Tk), True where a query may
    attend a key (see minilm.nn.masks; a key-padding mask is the (B, 1, 1, Tk)
    case). is_causal: query i may only see keys up to its own position.
    dropout_p: dropout on the attention probabilities (when training).
    return_weights=True also returns the probabilities (B, H, Tq, Tk).
    """
    qd, kd, vd = _data(q), _data(k), _data(v)
    if qd.ndim != 4 or kd.ndim != 4 or vd.ndim != 4:
        raise ValueError(f"scaled_dot_product_attention: expected (B, H, T, D) inputs, got "
                         f"q {tuple(qd.shape)}, k {tuple(kd.shape)}, v {tuple(vd.shape)}")
    if qd.shape[-1] != kd.shape[-1] or kd.shape[:3] != vd.shape[:3] or qd.shape[:2] != kd.shape[:2]:
        raise ValueError(f"scaled_dot_product_attention: incompatible shapes q {tuple(qd.shape)}, "
                         f"k {tuple(kd.shape)}, v {tuple(vd.shape)}")
    batch, _, tq, d = qd.shape
    tk = kd.shape[2]
    if is_causal and tq > tk:
        raise ValueError(f"scaled_dot_product_attention: causal attention needs Tq <= Tk, got {tq} > {tk}")
    scale = float(d ** -0.5 if scale is None else scale)
    xp = array_module(qd)
    mask = _data(attn_mask)
    if mask is not None:
        mask = xp.asarray(np.asarray(mask) if isinstance(mask, (list, tuple)) else mask)
        if mask.dtype != bool:
            raise TypeError(f"scaled_dot_product_attention: attn_mask must be boolean "
                            f"(True = may attend), got dtype {mask.dtype}")

    # The fused kernels apply the causal and key-padding masks themselves and never keep the
    # probabilities, so they cannot return them or drop some of them out: other masks, weights
    # for plotting and attention dropout take the reference path below.
    kernels = kernel_pair("attention", qd, kd, vd)
    key_rows = None if mask is None else masks.key_padding_rows(mask, batch, tk)
    if kernels is not None and not return_weights and not (dropout_p and training) \
            and (mask is None or key_rows is not None):
        return ops_fused.FusedAttention.apply(q, k, v, key_mask=key_rows, causal=is_causal, scale=scale,
                                              kernels=kernels)

    scores = (q @ k.transpose(-2, -1)) * scale                                  # (B, H, Tq, Tk)
    allowed = masks.combine(masks.causal_mask(tq, tk, xp) if is_causal else None, mask)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, -np.inf)
    weights = softmax(scores, axis=-1)                                          # a row with no key: zeros
    out = dropout(weights, dropout_p, training, generator) @ v                  # (B, H, Tq, D)
    return (out, weights.detach()) if return_weights else out
