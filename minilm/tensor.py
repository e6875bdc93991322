"""`Tensor`: an array that remembers how it was computed, so it can be differentiated.

A Tensor wraps a NumPy (or CuPy) array in `.data`. When an op runs on tensors
that require gradients, the output keeps a reference to the op (`_ctx`),
and the op keeps its inputs: that chain is the computation graph.
`loss.backward()` walks it from the loss back to the leaves, calling each
op's hand-written `backward` and summing gradients where a tensor was used
more than once (the multivariable chain rule).
"""
import numpy as np

from minilm.autograd import ops_elementwise as ew
from minilm.autograd import anomaly, ops_matmul, ops_nn, ops_reduce, ops_shape
from minilm.backend import array_module, is_cupy

_FLOAT_KINDS = "f"


def _to_array(data, dtype=None):
    """Python numbers/lists become float32 (or int64); arrays keep their dtype unless one is given."""
    if isinstance(data, Tensor):
        data = data.data
    is_array = hasattr(data, "__array_interface__") or hasattr(data, "__cuda_array_interface__")
    xp = array_module(data) if is_array else np
    arr = xp.asarray(data, dtype=dtype)
    if dtype is None and not is_array and arr.dtype == np.float64:
        arr = arr.astype(np.float32)          # float32 is the default for new tensors
    return arr


class Tensor:
    # Make `ndarray + Tensor` call Tensor.__radd__ instead of NumPy's own loop.
    __array_priority__ = 1000

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _to_array(data, dtype)
        if requires_grad and self.data.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"Tensor: requires_grad=True needs a floating-point tensor, "
                            f"got dtype {self.data.dtype} (shape {tuple(self.data.shape)})")
        self.requires_grad = bool(requires_grad)
        self.grad = None            # an array like .data, filled by backward() on leaves
        self._ctx = None            # the Function that produced this tensor (None for leaves)
        self._retains_grad = False

    @classmethod
    def _make(cls, array, requires_grad=False):
        t = cls.__new__(cls)
        t.data, t.requires_grad, t.grad, t._ctx, t._retains_grad = array, requires_grad, None, None, False
        return t

    # ----- basic properties ---------------------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    is_leaf = property(lambda self: self._ctx is None)

    @property
    def device(self):
        return "cuda" if is_cupy(self.data) else "cpu"

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        dev = ", device='cuda'" if self.device == "cuda" else ""
        body = np.array2string(self.numpy(), separator=", ", prefix="Tensor(")
        return f"Tensor({body}, dtype={self.dtype}{dev}{grad})"

    # ----- leaving the graph --------------------------------------------------------------
    def detach(self):
        """The same data, cut off from the graph (no gradient flows through it)."""
        return Tensor._make(self.data)

    def numpy(self):
        """The data as a NumPy array (copied to the host if it lives on a GPU)."""
        return self.data.get() if hasattr(self.data, "get") and self.device == "cuda" else self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: only a tensor with one element can be converted to a Python "
                             f"number, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    _post_accumulate_grad_hooks = None    # {id: fn}, created by the first registration

    def register_post_accumulate_grad_hook(self, hook):
        """Call hook(tensor) during backward(), right after this leaf's .grad is accumulated (PyTorch's name).

        A leaf's gradient is final once every op that used it has run its
        backward; the hook fires then, once per backward() that reaches this
        leaf, with the summed .grad (grads from earlier backward calls included,
        as in gradient accumulation). Leaves finish in roughly the reverse order
        of their use in the forward pass, so data parallelism
        (minilm.distributed.ddp) can start all-reducing the last layers'
        gradients while backward still runs through the first ones.
        Returns a handle; handle.remove() unregisters the hook.
        """
        if self._ctx is not None:
            raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors get an accumulated .grad; "
                               "this tensor was computed by an op (use it on a parameter or a tensor created "
                               "with requires_grad=True)")
        if not self.requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook: this tensor does not require grad, so "
                               "backward never accumulates a .grad into it")
        if not callable(hook):
            raise TypeError(f"register_post_accumulate_grad_hook: hook must be callable, got {type(hook).__name__}")
        if self._post_accumulate_grad_hooks is None:
            self._post_accumulate_grad_hooks = {}
        handle = _HookHandle(self._post_accumulate_grad_hooks)
        self._post_accumulate_grad_hooks[handle.id] = hook
        return handle

    def retain_grad(self):
        """Keep .grad on this intermediate tensor after backward (for inspection)."""
        self._retains_grad = True
        return self

    def to(self, device):
        """A copy on "cpu" or "cuda" (a new leaf with the same requires_grad)."""
        device = str(device)
        if device.startswith("cuda"):
            try:
                import cupy                                  # optional: only for .to("cuda")
            except ImportError:
                raise RuntimeError("Tensor.to('cuda'): CuPy is not installed "
                                   "(pip install 'minilm[cuda]')") from None
            data = cupy.asarray(self.data)
        elif device == "cpu":
            data = self.numpy()
        else:
            raise ValueError(f"Tensor.to: unknown device {device!r}; use 'cpu' or 'cuda'")
        if data is self.data:
            return self
        return Tensor(data, requires_grad=self.requires_grad)

    # ----- backpropagation ----------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Compute d(self)/d(leaf) for every leaf that requires a gradient, into leaf.grad.

        grad: dL/d(self); may be omitted only when self has one element (a loss).
        retain_graph: keep the graph so backward can run through it again.
        Gradients accumulate into .grad (call zero_grad between steps).
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph "
                               "(did you create it under no_grad(), or forget requires_grad=True?)")
        xp = array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: grad can be omitted only for a single-element "
                                   f"output, but this tensor has shape {self.shape}; pass grad=")
            grad = xp.ones_like(self.data)
        else:
            grad = _to_array(grad, dtype=self.dtype)
            if grad.shape != self.data.shape:
                raise ValueError(f"backward: grad of shape {tuple(grad.shape)} does not match the "
                                 f"tensor's shape {self.shape}")

        order = _topological_order(self)
        grads = {id(self): grad}
        for node in reversed(order):                  # from the output back to the leaves
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._ctx is None or node._retains_grad:
                g_full = xp.array(g, dtype=node.dtype)   # materialise broadcast views
                node.grad = g_full if node.grad is None else node.grad + g_full
            ctx = node._ctx
            if ctx is None:
                # every consumer of this leaf ran before it (topological order): its .grad is final
                if node._post_accumulate_grad_hooks:
                    for hook in list(node._post_accumulate_grad_hooks.values()):
                        hook(node)
                continue
            input_grads = ctx.backward(g)
            if anomaly._state["enabled"]:       # detect_anomaly(): off by default, one check
                anomaly.check_backward(ctx, g, input_grads)
            if len(input_grads) != len(ctx.inputs):
                raise RuntimeError(f"{ctx.name}.backward returned {len(input_grads)} gradients "
                                   f"for {len(ctx.inputs)} inputs")
            for parent, pg, needed in zip(ctx.inputs, input_grads, ctx.needs_grad):
                if not needed or pg is None:
                    continue
                if tuple(pg.shape) != parent.shape:
                    raise RuntimeError(f"{ctx.name}.backward produced a gradient of shape "
                                       f"{tuple(pg.shape)} for an input of shape {parent.shape}")
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg
            if not retain_graph:
                ctx.free()

    # ----- arithmetic ---------------------------------------------------------------------
    def _lift(self, other):
        """Python numbers join an op as arrays of our dtype, so float32 stays float32."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, (int, float, bool)):
            return array_module(self.data).asarray(other, dtype=self.dtype)
        return Tensor(other)

    def __add__(self, o): return ew.Add.apply(self, self._lift(o))
    def __radd__(self, o): return ew.Add.apply(self._lift(o), self)
    def __sub__(self, o): return ew.Sub.apply(self, self._lift(o))
    def __rsub__(self, o): return ew.Sub.apply(self._lift(o), self)
    def __mul__(self, o): return ew.Mul.apply(self, self._lift(o))
    def __rmul__(self, o): return ew.Mul.apply(self._lift(o), self)
    def __truediv__(self, o): return ew.Div.apply(self, self._lift(o))
    def __rtruediv__(self, o): return ew.Div.apply(self._lift(o), self)
    def __pow__(self, o): return ew.Pow.apply(self, self._lift(o))
    def __rpow__(self, o): return ew.Pow.apply(self._lift(o), self)
    def __neg__(self): return ew.Neg.apply(self)
    def __matmul__(self, o): return ops_matmul.MatMul.apply(self, self._lift(o))
    def __rmatmul__(self, o): return ops_matmul.MatMul.apply(self._lift(o), self)

    # comparisons give plain boolean tensors (no gradient)
    def _compare(self, o, fn):
        return Tensor._make(fn(self.data, o.data if isinstance(o, Tensor) else o))
    def __lt__(self, o): return self._compare(o, lambda a, b: a < b)
    def __le__(self, o): return self._compare(o, lambda a, b: a <= b)
    def __gt__(self, o): return self._compare(o, lambda a, b: a > b)
    def __ge__(self, o): return self._compare(o, lambda a, b: a >= b)
    def __eq__(self, o): return self._compare(o, lambda a, b: a == b)
    def __ne__(self, o): return self._compare(o, lambda a, b: a != b)
    __hash__ = object.__hash__

    def __setitem__(self, index, value):
        raise TypeError("Tensor does not support item assignment (it would break the graph); "
                        "use minilm.where / Tensor.masked_fill, or write to .data outside autograd")

    # ----- pointwise functions ------------------------------------------------------------
    def exp(self): return ew.Exp.apply(self)
    def log(self): return ew.Log.apply(self)
    def tanh(self): return ew.Tanh.apply(self)
    def sqrt(self): return ew.Sqrt.apply(self)
    def relu(self): return ew.ReLU.apply(self)

    def masked_fill(self, mask, value):
        mask = mask.data if isinstance(mask, Tensor) else mask
        return ew.MaskedFill.apply(self, mask, value)

    # ----- reductions ---------------------------------------------------------------------
    # `axis`/`keepdims` as in NumPy; `dim`/`keepdim` accepted as PyTorch spells them.
    def sum(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return ops_reduce.Sum.apply(self, axis=_pick(axis, dim), keepdims=_pick(keepdims, keepdim))

    def mean(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return ops_reduce.Mean.apply(self, axis=_pick(axis, dim), keepdims=_pick(keepdims, keepdim))

    def max(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return ops_reduce.Max.apply(self, axis=_pick(axis, dim), keepdims=_pick(keepdims, keepdim))

    def min(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return -(-self).max(axis=_pick(axis, dim), keepdims=_pick(keepdims, keepdim))

    def var(self, axis=None, keepdims=False, correction=1, *, dim=None, keepdim=None):
        return ops_reduce.Var.apply(self, axis=_pick(axis, dim), keepdims=_pick(keepdims, keepdim),
                                    correction=correction)

    def argmax(self, axis=None):
        return Tensor._make(self.data.argmax(axis=axis))

    def softmax(self, axis=-1):
        return ops_nn.Softmax.apply(self, axis=axis)

    def log_softmax(self, axis=-1):
        return ops_nn.LogSoftmax.apply(self, axis=axis)

    # ----- shapes -------------------------------------------------------------------------
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return ops_shape.Reshape.apply(self, shape=tuple(shape))

    view = reshape

    def permute(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return ops_shape.Permute.apply(self, axes=tuple(axes))

    def transpose(self, dim0=-2, dim1=-1):
        """Swap two axes (PyTorch's meaning; for a full reordering use permute)."""
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return self.permute(axes)

    @property
    def T(self):
        """All axes reversed (the matrix transpose for 2-D tensors)."""
        return self.permute(tuple(reversed(range(self.ndim))))

    def unsqueeze(self, axis):
        axis = axis % (self.ndim + 1)
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def squeeze(self, axis):
        if self.shape[axis] != 1:
            raise ValueError(f"squeeze: axis {axis} of shape {self.shape} has size {self.shape[axis]}, not 1")
        axis = axis % self.ndim
        return self.reshape(self.shape[:axis] + self.shape[axis + 1:])

    def __getitem__(self, index):
        index = _index_arrays(index)
        return ops_shape.GetItem.apply(self, index=index)

    def split(self, split_size_or_sections, axis=0):
        from minilm.tensor_functions import split     # tensor_functions imports this module
        return split(self, split_size_or_sections, axis=axis)


class _HookHandle:
    """What register_post_accumulate_grad_hook returns: .remove() takes the hook out (twice is harmless)."""
    _next_id = 0

    def __init__(self, hooks):
        self._hooks, self.id = hooks, _HookHandle._next_id
        _HookHandle._next_id += 1

    def remove(self):
        self._hooks.pop(self.id, None)


def _pick(numpy_name, torch_name):
    return numpy_name if torch_name is None else torch_name


def _index_arrays(index):
    """Replace Tensors inside an index by their arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _topological_order(root):
    """Every tensor that leads to `root` and requires grad, inputs before outputs.

    An explicit stack instead of recursion, so a chain of 10,000 ops does not
    hit Python's recursion limit. Each node is pushed once to be expanded and
    once more to be emitted after all its inputs.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        ctx = node._ctx
        if ctx is None:
            continue
        if ctx.freed:
            raise RuntimeError(f"backward: the graph through {ctx.name} was already freed by an "
                               f"earlier backward(); pass retain_graph=True to the first call if "
                               f"you need to backpropagate twice")
        parents = [p for p in ctx.inputs if p is not None and p.requires_grad and id(p) not in visited]
        # Leaves go below the inputs that have graphs of their own, so they are emitted just before
        # this node and come out of backward right after it (a layer's weights get their final .grad
        # as soon as that layer is done, which lets data parallelism start reducing them while backward
        # runs on). Leaves have no inputs, so the order among the other nodes, and every sum, is unchanged.
        stack.extend((p, False) for p in parents if p._ctx is None)
        stack.extend((p, False) for p in parents if p._ctx is not None)
    return order
