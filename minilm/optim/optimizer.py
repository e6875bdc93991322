"""The optimizer base class: parameter groups, per-parameter state, checkpoints.

An optimizer owns a list of *parameter groups*. Each group is a dict with the
key "params" (a list of parameters) plus its hyperparameters ("lr",
"weight_decay", ...); a hyperparameter missing from a group is filled in from
the optimizer's defaults. Different groups can use different learning rates or
weight decays (see `param_groups_for_weight_decay`).

A *parameter* is any object with
  .data            a NumPy (or CuPy) array, updated IN PLACE by `step()`,
                   because modules hold references to that same array object;
  .grad            an array of the same shape, or None (then `step()` skips it);
  .requires_grad   optional; a parameter with requires_grad=False is skipped.

Every parameter gets a global index: its position when the groups are read in
order (group 0's params first). The per-parameter state (momentum buffers,
Adam moments, the step count) lives in `self.state[index]`, a dict. Keying by
index rather than by the parameter object keeps the state independent of
whether a parameter class is hashable, and it is exactly the key a checkpoint
uses.

Checkpoints (never pickle): `state_dict()` returns

    {"state": {index: {"step": 3, "exp_avg": ndarray, "exp_avg_sq": ndarray}},
     "param_groups": [{"lr": 1e-3, "betas": [0.9, 0.999], ..., "params": [0, 1, 2]}]}

with NumPy copies of every array (CuPy state is copied to the host). To save it
as safetensors + JSON, flatten it:

    tensors, meta = flatten_optimizer_state(opt.state_dict())
    # tensors: {"optim.0.exp_avg": ndarray, "optim.0.exp_avg_sq": ndarray, ...}
    # meta:    {"param_groups": [...], "scalars": {"0": {"step": 3}}}  (JSON-able)
    opt.load_state_dict(unflatten_optimizer_state(tensors, meta))

The round trip is exact: the next `step()` after loading is bit-identical to
the step the original optimizer would have taken.
"""
import math
import numbers

import numpy as np

from minilm.backend import array_module, is_cupy


def _to_numpy(a):
    """A NumPy copy of a NumPy or CuPy array."""
    if is_cupy(a):
        return a.get()
    return np.array(a, copy=True)


def _json_value(v):
    """Turn a hyperparameter into plain JSON types (tuples -> lists, numpy scalars -> floats)."""
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    if v is None or isinstance(v, str):
        return v
    raise TypeError(f"Optimizer.state_dict: hyperparameter value {v!r} of type "
                    f"{type(v).__name__} is not JSON-able")


class Optimizer:
    """Base class: holds parameter groups and per-parameter state; subclasses define `step()`.

    Optimizer(params, defaults)
      params   an iterable of parameters, or of dicts {"params": [...], <hyperparams>}
      defaults a dict of hyperparameters used where a group does not set them
    """

    def __init__(self, params, defaults):
        if not isinstance(defaults, dict):
            raise TypeError(f"{type(self).__name__}: defaults must be a dict, got {type(defaults).__name__}")
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}           # global param index -> dict of state
        if hasattr(params, "data") and hasattr(params, "grad"):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of parameters "
                            f"or of dicts, got a single parameter; wrap it in a list")
        if isinstance(params, dict):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of parameters "
                            f"or of dicts, got a dict; wrap it in a list ([group])")
        groups = list(params)
        if len(groups) == 0:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)
        if not any(group["params"] for group in self.param_groups):
            raise ValueError(f"{type(self).__name__}: every parameter group is empty")

    # ----- groups -----------------------------------------------------------------
    def add_param_group(self, group):
        """Append a group {"params": [...], <hyperparams>}; missing hyperparams come from defaults."""
        if not isinstance(group, dict):
            raise TypeError(f"{type(self).__name__}.add_param_group: a group must be a dict, "
                            f"got {type(group).__name__}")
        if "params" not in group:
            raise ValueError(f"{type(self).__name__}.add_param_group: the group has no 'params' key "
                             f"(keys: {sorted(group)})")
        params = group["params"]
        if hasattr(params, "data") and hasattr(params, "grad"):
            params = [params]
        params = list(params)
        for p in params:
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise TypeError(f"{type(self).__name__}: a parameter must have .data and .grad, "
                                f"got {type(p).__name__}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in seen for p in params):
            raise ValueError(f"{type(self).__name__}.add_param_group: a parameter appears more than "
                             f"once across the parameter groups")
        new_group = {k: v for k, v in group.items() if k != "params"}
        for k, v in self.defaults.items():
            new_group.setdefault(k, v)
        new_group["params"] = params
        self.param_groups.append(new_group)

    def _indexed_params(self):
        """Yield (global index, param, group) in group order."""
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield i, p, group
                i += 1

    def _params_to_update(self):
        """Yield (index, param, grad, group) for params that have a gradient and require one."""
        for i, p, group in self._indexed_params():
            if p.grad is None or not getattr(p, "requires_grad", True):
                continue
            if p.grad.shape != p.data.shape:
                raise ValueError(f"{type(self).__name__}.step: parameter {i} has data of shape "
                                 f"{p.data.shape} but grad of shape {p.grad.shape}")
            yield i, p, p.grad, group

    # ----- the training-loop API -----------------------------------------------------
    def zero_grad(self, set_to_none=True):
        """Forget the gradients: set p.grad to None (default) or fill it with zeros in place."""
        for _, p, _ in self._indexed_params():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad[...] = 0

    def step(self):
        """Update every parameter that has a gradient. Each subclass (SGD, Adam, AdamW) defines it."""
        raise TypeError(f"{type(self).__name__}.step: the Optimizer base class has no update rule; "
                        f"use a subclass such as SGD, Adam or AdamW")

    # ----- checkpoints ------------------------------------------------------------------
    def state_dict(self):
        """{"state": {index: {name: ndarray or number}}, "param_groups": [hyperparams + "params": [indices]]}.

        Arrays are NumPy copies (safe to keep while training goes on);
        hyperparameters are plain JSON types.
        """
        state = {}
        for i, s in self.state.items():
            state[i] = {k: (v if isinstance(v, (int, float)) else _to_numpy(v)) for k, v in s.items()}
        groups = []
        start = 0
        for group in self.param_groups:
            g = {k: _json_value(v) for k, v in group.items() if k != "params"}
            g["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(g)
        return {"state": state, "param_groups": groups}

    def _checked_groups(self, state_dict):
        """The saved "param_groups" of a state dict, checked against this optimizer's groups (count, sizes)."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{name}.load_state_dict: expected a dict with keys 'state' and "
                             f"'param_groups', got {keys}")
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, (list, tuple)) or len(saved_groups) != len(self.param_groups):
            n = len(saved_groups) if isinstance(saved_groups, (list, tuple)) else saved_groups
            raise ValueError(f"{name}.load_state_dict: the checkpoint has {n} parameter "
                             f"groups, this optimizer has {len(self.param_groups)}")
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, dict) or "params" not in saved:
                raise ValueError(f"{name}.load_state_dict: saved group {gi} is not a dict with a "
                                 f"'params' list")
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: group {gi} has {len(saved['params'])} params "
                                 f"in the checkpoint and {len(group['params'])} here")
        return saved_groups

    def _load_hyperparameters(self, saved_groups):
        """Set every group's hyperparameters from the checked saved groups (JSON lists back to tuples)."""
        for saved, group in zip(saved_groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    group[k] = tuple(v) if isinstance(v, list) else v

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and state saved by `state_dict()` (for the same parameters, same order)."""
        name = type(self).__name__
        saved_groups = self._checked_groups(state_dict)
        params = {i: p for i, p, _ in self._indexed_params()}
        new_state = {}
        for key, s in state_dict["state"].items():
            i = int(key)
            if i not in params:
                raise ValueError(f"{name}.load_state_dict: state for parameter index {i}, but this "
                                 f"optimizer has {len(params)} parameters")
            data = params[i].data
            xp = array_module(data)
            entry = {}
            for k, v in s.items():
                if isinstance(v, (int, float, np.integer, np.floating)) and np.ndim(v) == 0:
                    entry[k] = v.item() if hasattr(v, "item") else v
                    continue
                arr = xp.array(v, dtype=data.dtype, copy=True)
                if arr.shape != data.shape:
                    raise ValueError(f"{name}.load_state_dict: state '{k}' of parameter {i} has shape "
                                     f"{arr.shape}, the parameter has shape {data.shape}")
                entry[k] = arr
            new_state[i] = entry
        self._load_hyperparameters(saved_groups)
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for gi, group in enumerate(self.param_groups):
            hp = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {gi}: {len(group['params'])} params, {hp}")
        lines.append(")")
        return "\n".join(lines)


def flatten_optimizer_state(state_dict, prefix="optim"):
    """Split an optimizer state_dict into (tensors, meta) for safetensors + JSON.

    tensors: {"<prefix>.<index>.<name>": ndarray}  for every array in the state
    meta:    {"param_groups": [...], "scalars": {"<index>": {"step": 3, ...}}}, JSON-able
    """
    tensors, scalars = {}, {}
    for i, s in state_dict["state"].items():
        for k, v in s.items():
            if isinstance(v, (int, float)):
                scalars.setdefault(str(i), {})[k] = v
            else:
                tensors[f"{prefix}.{i}.{k}"] = _to_numpy(v)
    meta = {"param_groups": [{k: _json_value(v) for k, v in g.items()} for g in state_dict["param_groups"]],
            "scalars": scalars}
    return tensors, meta


def unflatten_optimizer_state(tensors, meta, prefix="optim"):
    """Inverse of `flatten_optimizer_state`: rebuild {"state": ..., "param_groups": ...}."""
    state = {}
    for key, value in tensors.items():
        head, sep, rest = key.partition(".")
        index, sep2, name = rest.partition(".")
        if head != prefix or not sep or not sep2 or not index.isdigit() or not name:
            raise ValueError(f"unflatten_optimizer_state: tensor key {key!r} is not of the form "
                             f"'{prefix}.<index>.<name>'")
        state.setdefault(int(index), {})[name] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": [dict(g) for g in meta["param_groups"]]}


def check_hyperparameter(owner, name, value, low=0.0, high=math.inf, high_open=False):
    """Raise ValueError unless low <= value <= high (or < high when high_open)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        bracket = ")" if high_open else "]"
        raise ValueError(f"{owner}: invalid {name}={value!r}, expected a value in [{low}, {high}{bracket}")
