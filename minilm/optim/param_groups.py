"""Split a model's parameters into a weight-decay group and a no-decay group.

Weight decay pulls weights toward zero. It makes sense for the matrices that
mix features (Linear/attention weights) but not for biases, LayerNorm gains
(decaying a gain toward 0 fights the normalization) or embedding tables
(GPT-2/nanoGPT convention: "every parameter with ndim >= 2 decays"; here
embeddings are kept out as well, as in BERT's and many GPT recipes).

Rule: a parameter is NOT decayed when
  * p.data.ndim < 2 (biases, LayerNorm weight and bias, scalars), or
  * its name, lowercased, contains "embed", "wte", "wpe" or "norm"
    (this covers "LayerNorm", "layer_norm", "ln_f.norm", "word_embeddings"), or
  * one of its dotted/underscored name parts starts with "ln"
    ("ln_1.weight", "h.0.ln_f.weight", "ln1.gain"); a bare substring test for
    "ln" would also catch unrelated names such as "kiln".
Everything else decays.
Parameters with requires_grad=False are left out (they never update).
A parameter reached under several names (tied weights, e.g. GPT-2's wte and
lm_head) is listed once, in the no-decay group if ANY of its names says so.
"""
import re
from collections.abc import Mapping

_NO_DECAY_SUBSTRINGS = ("embed", "wte", "wpe", "norm")
_LN_PART = re.compile(r"(?:^|[._])ln")


def is_no_decay(name, param):
    """True if the parameter `name` should get weight_decay = 0 (see the module docstring)."""
    if param.data.ndim < 2:
        return True
    lowered = name.lower()
    if any(s in lowered for s in _NO_DECAY_SUBSTRINGS):
        return True
    return _LN_PART.search(lowered) is not None


def param_groups_for_weight_decay(named_parameters, weight_decay):
    """[{"params": decayed, "weight_decay": wd}, {"params": not_decayed, "weight_decay": 0.0}].

    named_parameters: an iterable of (name, parameter) pairs, e.g.
    model.named_parameters(), or a dict name -> parameter. Both groups are always returned (one may be
    empty), in this order, so checkpoints of the same model line up.
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"param_groups_for_weight_decay: weight_decay must be a number >= 0, "
                         f"got {weight_decay!r}")
    if isinstance(named_parameters, Mapping):
        named_parameters = named_parameters.items()
    order, no_decay_ids, by_id = [], set(), {}
    for item in named_parameters:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError(f"param_groups_for_weight_decay: expected (name, parameter) pairs, "
                            f"got {item!r:.80}")
        name, p = item
        if not getattr(p, "requires_grad", True):
            continue
        if id(p) not in by_id:
            by_id[id(p)] = p
            order.append(id(p))
        if is_no_decay(name, p):
            no_decay_ids.add(id(p))
    decay = [by_id[k] for k in order if k not in no_decay_ids]
    no_decay = [by_id[k] for k in order if k in no_decay_ids]
    return [{"params": decay, "weight_decay": float(weight_decay)},
            {"params": no_decay, "weight_decay": 0.0}]
