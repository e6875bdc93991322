"""Input checks shared by the models: token ids and their range.

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
