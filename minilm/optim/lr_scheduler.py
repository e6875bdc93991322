"""Learning-rate schedules: pure functions of the step, and a scheduler that applies them.

The schedules are plain functions `lr = f(step)` so they can be plotted,
tested and read on their own. `LRScheduler` (PyTorch's LambdaLR) multiplies
each parameter group's base lr by `lr_lambda(step)` and writes it into
`group["lr"]`.

warmup_cosine (the GPT-2/GPT-3/nanoGPT schedule; cosine from Loshchilov &
Hutter 2017, "SGDR"; linear warmup from Goyal et al. 2017):

    step <  warmup_steps:              lr = base_lr * step / warmup_steps
    warmup_steps <= step <= max_steps: progress = (step - warmup_steps) / (max_steps - warmup_steps)
                                       lr = min_lr + 0.5 * (base_lr - min_lr) * (1 + cos(pi * progress))
    step >  max_steps:                 lr = min_lr

warmup_linear (BERT's schedule): the same warmup, then a straight line from
base_lr at warmup_steps to min_lr at max_steps, then min_lr.

As in Hugging Face's schedules, the warmup starts at lr = 0 on step 0 and
reaches base_lr exactly at step == warmup_steps, so the curve is continuous.
"""
import math
import numbers


def _check_schedule_args(fn, step, base_lr, warmup_steps, max_steps, min_lr):
    for name, value in (("step", step), ("warmup_steps", warmup_steps), ("max_steps", max_steps)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"{fn}: {name} must be an integer >= 0, got {value!r}")
    if warmup_steps >= max_steps:
        raise ValueError(f"{fn}: max_steps={max_steps} must be larger than warmup_steps={warmup_steps} "
                         f"(use a shorter warmup for a short run)")
    for name, value in (("base_lr", base_lr), ("min_lr", min_lr)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
            raise ValueError(f"{fn}: {name} must be a number >= 0, got {value!r}")
    if min_lr > base_lr:
        raise ValueError(f"{fn}: min_lr={min_lr} is larger than base_lr={base_lr}")


def warmup_cosine(step, *, base_lr, warmup_steps, max_steps, min_lr=0.0):
    """Linear warmup from 0 to base_lr, then a half cosine down to min_lr at max_steps."""
    _check_schedule_args("warmup_cosine", step, base_lr, warmup_steps, max_steps, min_lr)
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if step >= max_steps:
        return float(min_lr)
    progress = (step - warmup_steps) / (max_steps - warmup_steps)      # in [0, 1)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def warmup_linear(step, *, base_lr, warmup_steps, max_steps, min_lr=0.0):
    """Linear warmup from 0 to base_lr, then a linear decay to min_lr at max_steps."""
    _check_schedule_args("warmup_linear", step, base_lr, warmup_steps, max_steps, min_lr)
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if step >= max_steps:
        return float(min_lr)
    progress = (step - warmup_steps) / (max_steps - warmup_steps)      # in [0, 1)
    return base_lr + (min_lr - base_lr) * progress


class LRScheduler:
    """LRScheduler(optimizer, lr_lambda): group["lr"] = base_lr_of_group * lr_lambda(step).

    Like torch.optim.lr_scheduler.LambdaLR. `lr_lambda` is one function of the
    step, or a list with one function per parameter group. The base lr of a
    group is its "lr" when the scheduler is created (stored in the group as
    "initial_lr", so a second scheduler or a checkpoint finds it).

    Construction applies step 0's lr. Call `step()` once after every
    optimizer.step(); `last_step` counts the calls (PyTorch's `last_epoch`).
    """

    def __init__(self, optimizer, lr_lambda):
        self.optimizer = optimizer
        groups = optimizer.param_groups
        if callable(lr_lambda):
            self.lr_lambdas = [lr_lambda] * len(groups)
        else:
            lambdas = list(lr_lambda)
            if len(lambdas) != len(groups) or not all(callable(f) for f in lambdas):
                raise ValueError(f"LRScheduler: lr_lambda must be a function or a list of "
                                 f"{len(groups)} functions (one per parameter group), got {lr_lambda!r}")
            self.lr_lambdas = lambdas
        for group in groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in groups]
        self.last_step = -1
        self._last_lr = []
        self.step()

    def get_lr(self):
        """The lr of every group at `self.last_step`."""
        return [base * f(self.last_step) for base, f in zip(self.base_lrs, self.lr_lambdas)]

    def step(self):
        """Advance one step and write the new lr into every parameter group."""
        self.last_step += 1
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def get_last_lr(self):
        """The list of learning rates (one per group) set by the last `step()`."""
        return list(self._last_lr)

    def state_dict(self):
        """JSON-able state: {"last_step": int, "base_lrs": [float]} (the lambdas are code, not state)."""
        return {"last_step": int(self.last_step), "base_lrs": [float(b) for b in self.base_lrs]}

    def load_state_dict(self, state_dict):
        """Restore `last_step` and `base_lrs`, and set the groups' lr to that step's value."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or not {"last_step", "base_lrs"} <= set(state_dict):
            raise ValueError(f"{name}.load_state_dict: expected keys 'last_step' and 'base_lrs', "
                             f"got {state_dict!r:.120}")
        if len(state_dict["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(f"{name}.load_state_dict: {len(state_dict['base_lrs'])} base lrs saved, "
                             f"the optimizer has {len(self.optimizer.param_groups)} groups")
        self.last_step = int(state_dict["last_step"])
        self.base_lrs = [float(b) for b in state_dict["base_lrs"]]
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["initial_lr"] = base
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


class WarmupCosine(LRScheduler):
    """WarmupCosine(optimizer, warmup_steps, max_steps, min_lr_ratio=0.0).

    Each group's lr follows `warmup_cosine` with base_lr = the group's lr and
    min_lr = min_lr_ratio * that lr (e.g. 0.1, as in nanoGPT/Chinchilla).
    """

    def __init__(self, optimizer, warmup_steps, max_steps, min_lr_ratio=0.0):
        if isinstance(min_lr_ratio, bool) or not isinstance(min_lr_ratio, numbers.Real) \
                or not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"WarmupCosine: min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}")
        # validate once here, so a bad argument fails at construction, not at step 0
        _check_schedule_args("WarmupCosine", 0, 1.0, warmup_steps, max_steps, min_lr_ratio)
        self.warmup_steps, self.max_steps, self.min_lr_ratio = warmup_steps, max_steps, min_lr_ratio

        def multiplier(step):
            return warmup_cosine(step, base_lr=1.0, warmup_steps=warmup_steps,
                                 max_steps=max_steps, min_lr=min_lr_ratio)

        super().__init__(optimizer, multiplier)
