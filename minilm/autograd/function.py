"""The base class of every differentiable op.

An op is a small class with two methods written by hand:

    forward(*arrays, **options) -> array      # compute the output, save what backward needs
    backward(grad_output)       -> tuple      # one gradient (or None) per array input

`Function.apply(*inputs, **options)` runs `forward` on the raw arrays and, if
any input requires a gradient, records the op on the output tensor (`_ctx`)
so that `Tensor.backward` can walk the graph in reverse.
"""
from minilm.autograd import anomaly
from minilm.autograd.grad_mode import is_grad_enabled
from minilm.backend import array_module


class Function:
    def __init__(self):
        self.inputs = ()        # the input Tensors (None once the graph is freed)
        self.needs_grad = ()    # for each input: does it want a gradient?
        self.freed = False

    @property
    def name(self):
        return type(self).__name__

    # Subclasses define forward(*arrays, **options) and backward(grad_output).
    # forward may keep arrays on `self` for backward; if no graph is recorded
    # the op object is simply dropped, and what it saved with it.

    @classmethod
    def apply(cls, *inputs, **options):
        from minilm.tensor import Tensor                  # minilm.tensor imports the ops, which import this
        tensors = [x if isinstance(x, Tensor) else None for x in inputs]
        arrays = [x if t is None else t.data for x, t in zip(inputs, tensors)]
        op = cls()
        op.xp = array_module(*arrays)
        out = op.forward(*arrays, **options)
        if anomaly._state["enabled"]:           # detect_anomaly(): off by default, one check
            anomaly.check_forward(op, arrays, options, out)
        needs_grad = tuple(t is not None and t.requires_grad for t in tensors)
        requires_grad = any(needs_grad) and is_grad_enabled()
        result = Tensor._make(out, requires_grad=requires_grad)
        if requires_grad:
            op.inputs, op.needs_grad = tuple(tensors), needs_grad
            result._ctx = op
        return result

    def free(self):
        """Drop the inputs and every saved array: the graph behind this op is gone."""
        keep = {"xp", "freed", "inputs", "needs_grad"}
        for key in [k for k in self.__dict__ if k not in keep]:
            del self.__dict__[key]
        self.inputs = ()
        self.freed = True


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting.

    If x of shape (3, 1) was broadcast to (2, 3, 4), every element of x was
    used 2 * 4 times, so its gradient is the sum over the broadcast axes.
    """
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)
