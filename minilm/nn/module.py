"""`Module` and `Parameter`: how layers own their weights (the torch.nn.Module pattern).

Assigning a Parameter or a Module to an attribute registers it, so
`named_parameters()` can walk the tree and name every weight by its path
("blocks.0.attn.out_proj.weight"). Those names are the keys of
`state_dict()`, which is what checkpoints store.
"""
import numpy as np

from minilm.backend import array_module
from minilm.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module trains: requires_grad is on, and modules register it."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)
        if self.data.dtype.kind != "f":
            raise TypeError(f"Parameter: needs floating-point data, got dtype {self.data.dtype}")

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "training", True)

    # ----- registration -------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array, persistent=True):
        """An array that belongs to the module but is not trained (e.g. a positional table).

        persistent=False keeps it out of state_dict (it is recomputed at construction).
        """
        self._buffers[name] = array
        if not persistent:
            self._non_persistent.add(name)
        object.__setattr__(self, name, array)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ----- walking the tree ---------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self, prefix=""):
        """(name, Parameter) pairs; a Parameter shared by two modules (tied weights) appears once."""
        seen = set()
        for mod_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        for mod_name, module in self.named_modules():
            for name, b in module._buffers.items():
                if name not in module._non_persistent:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    # ----- modes and gradients ------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze every parameter, e.g. for feature extraction."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def double(self):
        """Cast every parameter to float64 in place (for gradient checks)."""
        return self._cast(np.float64)

    def float(self):
        """Cast every parameter to float32 in place (the default)."""
        return self._cast(np.float32)

    def _cast(self, dtype):
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        return self

    def to(self, device):
        """Move every parameter and buffer to "cpu" or "cuda", in place (the same Parameter objects)."""
        for m in self.modules():
            for p in m._parameters.values():
                p.data = p.to(device).data
                p.grad = None
            for name, b in list(m._buffers.items()):
                moved = Tensor._make(b).to(device).data if not isinstance(b, Tensor) else b.to(device)
                m._buffers[name] = moved
                object.__setattr__(m, name, moved)
        return self

    # ----- saving and loading -------------------------------------------------------------
    def state_dict(self):
        """{name: array} for every parameter and persistent buffer (host NumPy copies)."""
        out = {}
        for name, p in self.named_parameters():
            out[name] = np.array(p.numpy(), copy=True)
        for name, b in self.named_buffers():
            data = b.numpy() if isinstance(b, Tensor) else (b.get() if hasattr(b, "get") else b)
            out[name] = np.array(data, copy=True)
        return out

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters in place (tied weights stay tied).

        With strict=True every missing, unexpected and mis-shaped key is named
        in one error, and nothing is changed unless all keys match.
        Returns (missing_keys, unexpected_keys).
        """
        own = dict(self.named_parameters())
        own_buffers = dict(self.named_buffers())
        expected = {**{k: v.shape for k, v in own.items()},
                    **{k: tuple(np.shape(b.data if isinstance(b, Tensor) else b)) for k, b in own_buffers.items()}}
        missing = sorted(k for k in expected if k not in state)
        unexpected = sorted(k for k in state if k not in expected)
        mismatched = sorted(f"{k}: checkpoint {tuple(np.shape(state[k]))} vs model {tuple(expected[k])}"
                            for k in expected if k in state and tuple(np.shape(state[k])) != tuple(expected[k]))
        problems = []
        if mismatched:
            problems.append("shape mismatch for " + "; ".join(mismatched))
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise KeyError(f"{type(self).__name__}.load_state_dict: " + " | ".join(problems))
        for name, p in own.items():
            if name in state:
                xp = array_module(p.data)
                p.data[...] = xp.asarray(np.asarray(state[name]), dtype=p.data.dtype)
        for mod_name, module in self.named_modules():
            for bname, b in module._buffers.items():
                key = f"{mod_name}.{bname}" if mod_name else bname
                if key in state and bname not in module._non_persistent:
                    target = b.data if isinstance(b, Tensor) else b
                    target[...] = array_module(target).asarray(np.asarray(state[key]), dtype=target.dtype)
        return missing, unexpected

    # ----- printing -----------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            child_lines = repr(child).split("\n")
            lines.append(f"  ({name}): " + "\n  ".join(child_lines))
        if self._modules:
            total = self.num_parameters()
            lines.append(f")  # {total:,} parameters")
        else:
            lines[0] += ")"
        return "\n".join(lines)


class ModuleList(Module):
    """A list of modules, registered as "0", "1", ... so their parameters are found."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        setattr(self, str(len(self._modules)), module)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Sequential(ModuleList):
    """Call the modules one after another."""

    def __init__(self, *modules):
        super().__init__(modules)

    def forward(self, x):
        for m in self:
            x = m(x)
        return x
