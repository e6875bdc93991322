"""The learning-rate schedule: warm-up, then cosine decay; a pure function, and a scheduler that applies it.

warmup_cosine (the GPT-2/GPT-3/nanoGPT schedule; cosine from Loshchilov &
Hutter 2017, "SGDR"; linear warmup from Goyal et al. 2017):

    step <  warmup_steps:              lr = base_lr * step / warmup_steps
    warmup_steps <= step <= max_steps: progress = (step - warmup_steps) / (max_steps - warmup_steps)
                                       lr = min_lr + 0.5 * (base_lr - min_lr) * (1 + cos(pi * progress))
    step >  max_steps:                 lr = min_lr

As in Hugging Face's schedules, the warmup starts at lr = 0 on step 0 and
reaches base_lr exactly at step == warmup_steps, so the curve is continuous.

The function can be plotted, tested and read on its own; `WarmupCosine` writes
its value into every parameter group of an optimizer, one step at a time (like
a torch.optim.lr_scheduler). The Trainer uses it.
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


class WarmupCosine:
    """WarmupCosine(optimizer, warmup_steps, max_steps, min_lr_ratio=0.0): sets group["lr"] step by step.

    Each group's lr follows `warmup_cosine` with base_lr = the group's lr when the
    scheduler is made, and min_lr = min_lr_ratio * that lr (e.g. 0.1, as in
    nanoGPT/Chinchilla). Construction sets step 0's rate; `step()` moves to the
    next step and sets its rate; `last_step` is the step whose rate is set.
    """

    def __init__(self, optimizer, warmup_steps, max_steps, min_lr_ratio=0.0):
        if isinstance(min_lr_ratio, bool) or not isinstance(min_lr_ratio, numbers.Real) \
                or not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"WarmupCosine: min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}")
        # validate once here, so a bad argument fails at construction, not at step 0
        _check_schedule_args("WarmupCosine", 0, 1.0, warmup_steps, max_steps, min_lr_ratio)
        self.optimizer = optimizer
        self.warmup_steps, self.max_steps, self.min_lr_ratio = warmup_steps, max_steps, min_lr_ratio
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.last_step = -1
        self.step()

    def step(self):
        """Move to the next step and write its rate into every parameter group."""
        self.last_step += 1
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = warmup_cosine(self.last_step, base_lr=base_lr, warmup_steps=self.warmup_steps,
                                        max_steps=self.max_steps, min_lr=base_lr * self.min_lr_ratio)

    def get_last_lr(self):
        """The learning rates (one per group) set by the last `step()`."""
        return [group["lr"] for group in self.optimizer.param_groups]
