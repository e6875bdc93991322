"""Weight exchange with the seed article's PyTorch `TransformerModel`.

The seed's layers are torch.nn.TransformerEncoderLayer, whose parameters are
named a little differently from minilm's one TransformerBlock:

    seed (PyTorch)                                  minilm
    transformer_encoder.layers.N.self_attn.in_proj_weight   ...self_attn.in_proj.weight
    transformer_encoder.layers.N.self_attn.in_proj_bias     ...self_attn.in_proj.bias
    transformer_encoder.layers.N.linear1.*                  ...ff.linear1.*
    transformer_encoder.layers.N.linear2.*                  ...ff.linear2.*
    (everything else: the same name)

The arrays themselves are the same (both store Linear weights as (out, in)).
The seed also saves its positional table `pos_encoder.pe`, which is checked
against the formula and dropped: it carries no trained information.
"""
import math

import numpy as np

from minilm.models.hf import rename_keys
from minilm.nn.positional import sinusoidal_table

SEED_NAMES = [                     # (torch.nn.TransformerEncoderLayer, minilm's TransformerBlock)
    ("self_attn.in_proj_weight", "self_attn.in_proj.weight"),
    ("self_attn.in_proj_bias", "self_attn.in_proj.bias"),
    ("linear1.", "ff.linear1."),
    ("linear2.", "ff.linear2."),
]


def from_seed_state_dict(state, max_len, d_model):
    """The seed's state_dict (as NumPy arrays) under minilm's names; `pos_encoder.pe` checked and dropped."""
    state = dict(state)
    if "pos_encoder.pe" in state:
        check_positional_table(state.pop("pos_encoder.pe"), max_len, d_model)
    if not any(key.endswith("self_attn.in_proj_weight") for key in state):
        return state                                                            # minilm's own names already
    return rename_keys(state, SEED_NAMES)


def seed_state_dict(model):
    """A TransformerModel's weights under the seed's names, with its `pos_encoder.pe` buffer (float32).

    Turn each array into a torch tensor and the seed module loads it with load_state_dict(strict=True).
    """
    state = rename_keys(model.state_dict(), SEED_NAMES, reverse=True)
    state["pos_encoder.pe"] = sinusoidal_table(model.max_len, model.d_model)[:, None, :]  # (L, C) -> (L, 1, C)
    return state


def check_positional_table(table, max_len, d_model):
    """Check the seed's `pos_encoder.pe` buffer (max_len, 1, d_model) against the sinusoid formula.

    PyTorch builds that table in float32, so its angle pos * w_i is rounded
    with a relative error of ~2^-24 each step; at position 5000 the sines
    then differ from the exact ones by up to ~2e-4. The tolerance is
    therefore 1e-6 plus 4 float32 ulps of the angle, which is what a correct
    float32 table meets and a wrong one (shifted, swapped sin/cos,
    different base) misses by orders of magnitude.
    """
    table = np.asarray(table)
    expected = (max_len, 1, d_model)
    if table.shape != expected:
        raise KeyError(f"TransformerModel.load_state_dict: 'pos_encoder.pe' has shape "
                       f"{table.shape}, expected {expected} (max_len, 1, d_model)")
    ours = sinusoidal_table(max_len, d_model, dtype=np.float64)                            # (L, C)
    freq = np.exp(np.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))                # (C/2,)
    angle = np.arange(max_len)[:, None] * np.repeat(freq, 2)[None, :d_model]               # (L, C)
    tolerance = 1e-6 + 4 * np.finfo(np.float32).eps * angle
    diff = np.abs(table[:, 0, :].astype(np.float64) - ours)                                # (L, C)
    if not (diff <= tolerance).all():
        pos, dim = np.unravel_index(np.argmax(diff - tolerance), diff.shape)
        raise ValueError(f"TransformerModel.load_state_dict: 'pos_encoder.pe' is not the sinusoidal "
                         f"table: at position {pos}, dim {dim} it holds {table[pos, 0, dim]!r}, "
                         f"the formula gives {ours[pos, dim]!r}")
