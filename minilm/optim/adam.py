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

The code computes the same update in the paper's cheaper form (end of section 2
of Kingma & Ba): p = p - lr*sqrt(1-beta2^t)/(1-beta1^t) * m_t / (sqrt(v_t) + eps*sqrt(1-beta2^t)),
which is algebraically identical to the lines above (and to torch.optim.Adam/AdamW,
where eps is added after dividing sqrt(v_t) by sqrt(1 - beta2^t)); results agree
with PyTorch to float rounding.
State per parameter: "step" (int), "exp_avg", "exp_avg_sq" (arrays like p).
"""
import math

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
        """One Adam/AdamW update of every parameter that has a gradient (in place).

        Two work buffers shaped like p (reused across parameters and steps)
        hold the temporaries, so a step allocates nothing new per parameter
        after the first one.
        """
        for i, p, grad, group in self._params_to_update():
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            xp = array_module(p.data)
            state = self.state.setdefault(i, {})
            if "step" not in state:
                state["step"] = 0
                state["exp_avg"] = xp.zeros_like(p.data)
                state["exp_avg_sq"] = xp.zeros_like(p.data)
            state["step"] += 1
            t = state["step"]
            m, v = state["exp_avg"], state["exp_avg_sq"]
            tmp = self._work_buffer(p.data, slot=0)

            if wd != 0:
                if self.decoupled_weight_decay:
                    p.data *= 1.0 - lr * wd                   # AdamW: p = p - lr*wd*p
                else:
                    g = self._work_buffer(p.data, slot=1)     # Adam: g = g + wd*p
                    xp.multiply(p.data, wd, out=g)
                    g += grad
                    grad = g

            # m = beta1*m + (1-beta1)*g, written as m += (1-beta1)*(g - m)  (torch's lerp)
            xp.subtract(grad, m, out=tmp)
            tmp *= 1.0 - beta1
            m += tmp
            # v = beta2*v + (1-beta2)*g^2
            xp.multiply(grad, grad, out=tmp)
            tmp *= 1.0 - beta2
            v *= beta2
            v += tmp
            # p = p - lr * m_hat / (sqrt(v_hat) + eps), with both bias corrections folded
            # into two scalars (Kingma & Ba, end of section 2), one pass fewer:
            #   p = p - step_size * m / (sqrt(v) + eps_hat),
            #   step_size = lr * sqrt(1 - beta2^t) / (1 - beta1^t),  eps_hat = eps * sqrt(1 - beta2^t)
            sqrt_bc2 = math.sqrt(1.0 - beta2 ** t)
            xp.sqrt(v, out=tmp)
            tmp += eps * sqrt_bc2
            xp.divide(m, tmp, out=tmp)
            tmp *= lr * sqrt_bc2 / (1.0 - beta1 ** t)
            p.data -= tmp


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
