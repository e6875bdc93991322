"""Input checks shared by the models: token ids, padding masks, tied-weight keys.

Every model takes integer ids of shape (B, T). These helpers turn what the
user passed (a list, a NumPy array, a Tensor) into an integer array and raise
a clear error, naming the model and the argument, when it is not one.
"""
import numpy as np

from minilm.tensor import Tensor


def _raw(x):
    if isinstance(x, Tensor):
        return x.data
    if hasattr(x, "__cuda_array_interface__") or isinstance(x, np.ndarray):
        return x
    return np.asarray(x)


def as_token_ids(ids, where, name="input_ids"):
    """ids as an integer array of shape (B, T); TypeError/ValueError naming `where` and `name`."""
    arr = _raw(ids)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{where}: {name} must be integer token ids, got dtype {arr.dtype} "
                        f"(shape {tuple(arr.shape)})")
    if arr.ndim != 2:
        raise ValueError(f"{where}: {name} must have shape (batch, time), got shape {tuple(arr.shape)}"
                         f"{' (add a batch axis: ids[None])' if arr.ndim == 1 else ''}")
    return arr


def check_id_range(ids, size, where, name="input_ids", what="vocabulary"):
    """Raise IndexError naming the first id outside [0, size)."""
    if ids.size == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= size:
        bad = high if high >= size else low
        raise IndexError(f"{where}: {name} contains {bad}, outside the {what} [0, {size})")


def as_padding_mask(mask, shape, where):
    """A (B, T) key-padding mask (1/True = real token) as a NumPy bool array, shape-checked."""
    if mask is None:
        return None
    arr = np.asarray(mask.numpy() if isinstance(mask, Tensor) else mask)
    if arr.shape != tuple(shape):
        raise ValueError(f"{where}: attention_mask of shape {arr.shape} must match input_ids {tuple(shape)}")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{where}: attention_mask must hold 0 (padding) and 1 (real token) only")
        arr = arr.astype(bool)
    return arr


def pop_tied_copy(state, key, tied_to, model, where):
    """Remove `key` from a state dict if it is a copy of the tied weight `tied_to`.

    Checkpoints written by Hugging Face or PyTorch may store a tied weight
    twice (e.g. `lm_head.weight` next to `transformer.wte.weight`). Our models
    own that weight once, so the copy is dropped after checking it really is
    the same matrix: an untied head would be a different model.
    """
    if key not in state:
        return state
    state = dict(state)
    copy = np.asarray(state.pop(key))
    if tied_to in state:
        original = np.asarray(state[tied_to])
        if copy.shape != original.shape or not np.array_equal(copy, original):
            raise ValueError(f"{where}: {key!r} differs from {tied_to!r}; {model} ties these two "
                             f"weights and cannot load an untied checkpoint")
    return state
