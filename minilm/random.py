"""minilm's own random number generator, so no code touches NumPy's global state.

Dropout and weight initialisation draw from a `numpy.random.Generator`. Code
that wants reproducibility passes its own; otherwise they use this default,
which `minilm.manual_seed(seed)` resets.
"""
import numpy as np

_default = [np.random.default_rng(0)]


def manual_seed(seed):
    """Reset minilm's default generator; returns it."""
    _default[0] = np.random.default_rng(seed)
    return _default[0]


def default_generator():
    return _default[0]
