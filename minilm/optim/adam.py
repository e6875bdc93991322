"""Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019).

Adam, for a parameter p with gradient g at step t = 1, 2, ... (m_0 = v_0 = 0):

    g_t   = g_t + weight_decay * p              (Adam: L2 penalty folded into the gradient)
    m_t   = beta1 * m_{t-1} + (1 - beta1) * g_t         first moment  ("exp_avg")
    v_t   = beta2 * v_{t-1} + (1 - beta2) * g_t^2       second moment ("exp_avg_sq")
    m_hat = m_t / (1 - beta1^t)                         bias corrections: the moments start
    v_hat = v_t / (1 - beta2^t)                         at 0 and are too small early on
    p     = p - lr * m_hat / (sqrt(v_hat) + eps)

AdamW decouples the weight decay from the gradient ("Decoupled Weight Decay
Regularization", Loshchilov & Hutter, ICLR 2019): instead of the L2 term in
g_t, the parameter itself shrinks before the Adam step,

    p     = p - lr * weight_decay * p
    ...then the Adam step above with weight_decay = 0 in the gradient.

With L2-in-the-gradient, the decay of a weight is divided by sqrt(v_hat) like
every other gradient component, so weights with large gradients are barely
decayed; the decoupled form decays every weight at the same rate lr * wd.

State per parameter: "step" (int), "exp_avg", "exp_avg_sq" (arrays like p).
"""
from minilm.backend import array_module

from .optimizer import Optimizer, check_hyperparameter


def _check_adam_args(owner, lr, betas, eps, weight_decay):
    check_hyperparameter(owner, "lr", lr)
    check_hyperparameter(owner, "eps", eps)
    check_hyperparameter(owner, "weight_decay", weight_decay)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
    check_hyperparameter(owner, "betas[0]", betas[0], high=1.0, high_open=True)
    check_hyperparameter(owner, "betas[1]", betas[1], high=1.0, high_open=True)


class _AdamBase(Optimizer):
    """The shared Adam step; subclasses say how weight decay enters."""

    decoupled_weight_decay = False

    def __init__(self, params, lr, betas, eps, weight_decay):
        owner = type(self).__name__
        _check_adam_args(owner, lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def step(self):
        """One Adam/AdamW update of every parameter that has a gradient (in place): the formulas above."""
        for i, p, grad, group in self._params_to_update():
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            xp = array_module(p.data)
            state = self.state.setdefault(i, {})
            if not state:
                state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
            state["step"] += 1
            t = state["step"]
            if wd != 0 and self.decoupled_weight_decay:
                p.data *= 1.0 - lr * wd                                  # AdamW: p = p - lr*wd*p
            elif wd != 0:
                grad = grad + wd * p.data                                # Adam: g = g + wd*p
            m = state["exp_avg"] = beta1 * state["exp_avg"] + (1.0 - beta1) * grad
            v = state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1.0 - beta2) * grad * grad
            m_hat = m / (1.0 - beta1 ** t)
            v_hat = v / (1.0 - beta2 ** t)
            p.data -= lr * m_hat / (xp.sqrt(v_hat) + eps)


class Adam(_AdamBase):
    """Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0); L2 decay in the gradient."""

    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, betas, eps, weight_decay)


class AdamW(_AdamBase):
    """AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01); decoupled decay.

    Per step: p *= 1 - lr*wd, then the bias-corrected Adam step (see the module docstring).
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay)
