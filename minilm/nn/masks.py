"""Attention masks: one convention, and every conversion into it.

minilm's convention (the same as torch.nn.functional.scaled_dot_product_attention):

    an attention mask is a *boolean* array, True = this query may attend this key,
    broadcastable to the scores' shape (B, H, Tq, Tk).

The masks a model meets, all turned into that form here and nowhere else:

    padding_mask(attention_mask)  the tokenizer's (B, T) 0/1 array (1 = real token)
                                  -> (B, 1, 1, T): every query may see every real key
    causal_mask(tq, tk)           query i may see keys up to its own position -> (Tq, Tk)
    from_additive(mask)           PyTorch's float form (0.0 = attend, -inf = blocked), as
                                  nn.Transformer.generate_square_subsequent_mask returns
    combine(a, b)                 both rules at once (logical and); None means "no rule"

Beware: a *boolean* mask for torch.nn.Transformer / nn.MultiheadAttention means
the opposite (True = blocked). minilm never uses that form.

A query row whose mask is False everywhere (possible with padding) gets
all-zero attention weights and a zero output, never NaN.
"""
import numpy as np

from minilm.backend import array_module
from minilm.tensor import Tensor


def _as_array(mask):
    if isinstance(mask, Tensor):
        return mask.data
    if isinstance(mask, (list, tuple)):
        return np.asarray(mask)
    return mask


def padding_mask(attention_mask, shape, where):
    """The tokenizer's (B, T) mask (1/True = real token, 0/False = padding) as a (B, 1, 1, T) bool mask.

    `shape` is the (B, T) of the input ids it must match; errors name `where`.
    """
    if attention_mask is None:
        return None
    arr = _as_array(attention_mask)
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{where}: attention_mask of shape {tuple(arr.shape)} must match the "
                         f"token ids' shape {tuple(shape)} (batch, time)")
    if arr.dtype != bool:
        xp = array_module(arr)
        if not bool(xp.isin(arr, xp.asarray([0, 1])).all()):
            raise ValueError(f"{where}: attention_mask must hold 0 (padding) and 1 (real token) only")
        arr = arr.astype(bool)
    return arr[:, None, None, :]                                              # (B, T) -> (B, 1, 1, T)


def causal_mask(tq, tk, xp=np):
    """(Tq, Tk) bool: query i, at absolute position i + (Tk - Tq), may see keys j <= its position.

    With Tq == Tk that is the lower triangle; with Tq < Tk (decoding with a KV
    cache: the new queries come after Tk - Tq cached tokens) it lets them see
    the whole past.
    """
    return xp.tril(xp.ones((tq, tk), dtype=bool), k=tk - tq)


def from_additive(mask, where):
    """PyTorch's float additive mask (0.0 = may attend, -inf = blocked) as booleans; booleans pass through.

    Any other float would be a soft bias on the scores, which minilm's
    attention does not support, so it is an error rather than a silent cut.
    """
    arr = np.asarray(_as_array(mask))
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind != "f":
        raise TypeError(f"{where}: mask must be boolean (True = may attend) or a float additive "
                        f"mask (0 / -inf), got dtype {arr.dtype}")
    allowed, blocked = arr == 0.0, np.isneginf(arr)
    if not (allowed | blocked).all():
        bad = arr[~(allowed | blocked)].flat[0]
        raise ValueError(f"{where}: a float mask may only hold 0.0 (attend) and -inf (blocked), "
                         f"found {bad!r}; additive attention biases are not supported")
    return allowed


def combine(a, b):
    """Both rules: a & b, where None means no restriction."""
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def key_padding_rows(mask, batch, tk):
    """If `mask` only says which keys are real (shape (B or 1, 1, 1, Tk)), return it as (B, Tk); else None.

    That is the one form, besides causal, that the fused attention kernels
    apply while streaming over the keys (see nn.functional).
    """
    if mask.ndim == 4 and mask.shape[1:3] == (1, 1) and mask.shape[3] == tk and mask.shape[0] in (1, batch):
        xp = array_module(mask)
        return xp.ascontiguousarray(xp.broadcast_to(mask.reshape(mask.shape[0], tk), (batch, tk)))
    return None
