"""Stochastic gradient descent with momentum, dampening, L2 weight decay and Nesterov.

PyTorch's formulation (torch.optim.SGD), for a parameter p with gradient g at step t:

    g_t = g_t + weight_decay * p                     (L2 penalty, if weight_decay != 0)
    b_1 = g_1                                        (first step: the buffer starts as the gradient)
    b_t = momentum * b_{t-1} + (1 - dampening) * g_t (later steps)
    d_t = g_t + momentum * b_t   if nesterov         (Sutskever et al. 2013, "On the importance
    d_t = b_t                    otherwise            of initialization and momentum in deep learning")
    p   = p - lr * d_t

With momentum = 0 there is no buffer and d_t = g_t (plain SGD).
"""
from minilm.backend import array_module

from .optimizer import Optimizer, check_hyperparameter


class SGD(Optimizer):
    """SGD(params, lr, momentum=0.0, dampening=0, weight_decay=0.0, nesterov=False)."""

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            check_hyperparameter("SGD", name, value)
        check_hyperparameter("SGD", "dampening", dampening, high=1.0)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"SGD: nesterov=True needs momentum > 0 and dampening = 0, "
                             f"got momentum={momentum}, dampening={dampening}")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=bool(nesterov))
        super().__init__(params, defaults)

    def step(self):
        """One SGD update of every parameter that has a gradient (in place)."""
        for i, p, grad, group in self._params_to_update():
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            wd, nesterov = group["weight_decay"], group["nesterov"]
            if nesterov and (momentum <= 0 or dampening != 0):
                raise ValueError(f"SGD.step: group with nesterov=True needs momentum > 0 and "
                                 f"dampening = 0, got momentum={momentum}, dampening={dampening}")
            d_p = grad if wd == 0 else grad + wd * p.data      # a new array: never modify p.grad
            if momentum != 0:
                state = self.state.setdefault(i, {})
                if "momentum_buffer" not in state:                  # b_1 = g_1
                    state["momentum_buffer"] = array_module(p.data).array(d_p, dtype=p.data.dtype, copy=True)
                else:
                    state["momentum_buffer"] = momentum * state["momentum_buffer"] + (1.0 - dampening) * d_p
                buf = state["momentum_buffer"]
                d_p = d_p + momentum * buf if nesterov else buf
            p.data -= lr * d_p
