"""`minilm.nn.functional` (import as F): the neural-network ops as functions.

The names and arguments follow `torch.nn.functional` where a learner would
expect them. Each function is a thin wrapper over one op class in
`minilm.autograd`, whose forward and backward are the readable NumPy
reference; for float32 arrays the op asks the active backend
(`minilm.set_backend`) whether a fast kernel should run instead.
"""
import numpy as np

from minilm.autograd import ops_attention, ops_elementwise, ops_nn
from minilm.backend import array_module
from minilm.random import default_generator
from minilm.tensor import Tensor


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def relu(x):
    return ops_elementwise.ReLU.apply(x)


def gelu(x, approximate="none"):
    """GELU(x) = x * Phi(x); approximate="tanh" uses GPT-2's tanh formula."""
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
    return ops_nn.CrossEntropy.apply(flat_logits, targets.reshape(-1), ignore_index=ignore_index,
                                     label_smoothing=label_smoothing)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last axis (normalized_shape must be (C,) or C)."""
    c = normalized_shape if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if c not in (x.shape[-1], (x.shape[-1],)):
        raise ValueError(f"layer_norm: normalized_shape {normalized_shape} must equal the last "
                         f"dimension of the input of shape {x.shape} (only the last axis is supported)")
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
    out = x @ weight.T
    return out + bias if bias is not None else out


def scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, return_weights=False, training=True, generator=None):
    """softmax(q k^T * scale + mask) v for (B, H, T, D) inputs.

    attn_mask: boolean, broadcastable to (B, H, Tq, Tk), True where a query
    may attend a key (PyTorch's convention). A key-padding mask is the
    (B, 1, 1, Tk) case. is_causal: query i may only see keys up to its own
    position. return_weights=True also returns the attention probabilities
    (B, H, Tq, Tk) for plotting. dropout_p drops attention probabilities.
    """
    mask = _data(attn_mask)
    if mask is not None:
        mask = np.asarray(mask) if isinstance(mask, (list, tuple)) else mask
        if mask.dtype != bool:
            raise TypeError(f"scaled_dot_product_attention: attn_mask must be boolean "
                            f"(True = may attend), got dtype {mask.dtype}")
    if dropout_p and training:
        # Dropout on the probabilities needs them materialised: compose from
        # the reference pieces so the backward stays exact.
        return _attention_with_dropout(q, k, v, mask, dropout_p, is_causal, scale, return_weights, generator)
    result = ops_attention.ScaledDotProductAttention.apply(
        q, k, v, attn_mask=mask, causal=is_causal, scale=scale, keep_weights=return_weights)
    return result


def _attention_with_dropout(q, k, v, mask, dropout_p, is_causal, scale, return_weights, generator):
    from minilm.tensor_functions import where
    d = q.shape[-1]
    scale = d ** -0.5 if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale                              # (B, H, Tq, Tk)
    xp = array_module(q.data)
    full = ops_attention.build_attention_mask(xp, q.shape[2], k.shape[2], is_causal, mask)
    if full is not None:
        scores = scores.masked_fill(~xp.broadcast_to(full, scores.shape), -1e30)
    weights = softmax(scores, axis=-1)
    if full is not None:  # rows with no visible key: zero, not uniform
        any_visible = xp.broadcast_to(full, scores.shape).any(axis=-1, keepdims=True)
        weights = where(xp.broadcast_to(any_visible, scores.shape), weights, 0.0)
    out = dropout(weights, dropout_p, True, generator) @ v
    return (out, weights.detach()) if return_weights else out
