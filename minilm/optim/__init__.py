"""Optimizers, learning-rate schedules and gradient clipping (NumPy or CuPy arrays, updated in place).

    from minilm.optim import AdamW, WarmupCosine, clip_grad_norm_, param_groups_for_weight_decay
    groups = param_groups_for_weight_decay(model.named_parameters(), weight_decay=0.1)
    opt = AdamW(groups, lr=3e-4, betas=(0.9, 0.95))
    sched = WarmupCosine(opt, warmup_steps=100, max_steps=5000, min_lr_ratio=0.1)
    for batch in batches:
        loss = model.loss(batch); opt.zero_grad(); loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step()
"""
from . import lr_scheduler
from .adam import Adam, AdamW
from .clip import clip_grad_norm_
from .lr_scheduler import WarmupCosine, warmup_cosine
from .optimizer import Optimizer, flatten_optimizer_state, unflatten_optimizer_state
from .param_groups import param_groups_for_weight_decay
from .sgd import SGD

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm_", "param_groups_for_weight_decay",
    "lr_scheduler", "WarmupCosine", "warmup_cosine",
    "flatten_optimizer_state", "unflatten_optimizer_state",
]
