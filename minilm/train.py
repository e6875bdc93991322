"""The Trainer: one loop that pretrains a GPT (autoregressive LM) or a BERT (masked LM).

Each optimizer step:
    for each of grad_accum micro-batches: loss = objective(model, batch); (loss / grad_accum).backward()
    stop if the loss is not finite (the weights and the last checkpoint stay good)
    clip the global gradient norm, set the learning rate (warm-up, then cosine decay), AdamW step
Every eval_interval steps: validation loss / perplexity (and MLM accuracy).
Every ckpt_interval steps, at the end and on Ctrl-C: a checkpoint with the
weights, the optimizer state, the step and every random state, so `resume()`
continues with exactly the loss curve an uninterrupted run would have drawn.
"""
import json
import math
import time
from pathlib import Path

import numpy as np

from minilm import random as minilm_random
from minilm.io.atomic import atomic_write_text
from minilm.io.checkpoint import add_prefix, load_checkpoint, save_checkpoint, take_prefix
from minilm.optim import AdamW, clip_grad_norm_, flatten_optimizer_state, param_groups_for_weight_decay
from minilm.optim import unflatten_optimizer_state, warmup_cosine
from minilm.progress import ProgressBar

CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.jsonl"


def module_generators(model):
    """{module path: Generator} for every random generator the model's modules own (dropout).

    A generator shared by many modules is listed once, under the first path.
    Their states go into checkpoints so a resumed run drops the same units.
    """
    found, seen = {}, set()
    for name, module in model.named_modules():
        gen = module.__dict__.get("generator")
        if isinstance(gen, np.random.Generator) and id(gen) not in seen:
            seen.add(id(gen))
            found[name or "<root>"] = gen
    return found


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""


class Trainer:
    def __init__(self, model, objective, train_batcher, val_batches, *, out_dir, steps, lr=1e-3,
                 warmup_steps=100, min_lr_ratio=0.1, weight_decay=0.1, betas=(0.9, 0.99),
                 grad_clip=1.0, grad_accum=1, eval_interval=200, ckpt_interval=500,
                 log_interval=50, config=None, on_eval=None, progress_stream=None):
        """val_batches: a function returning a fresh iterable of validation batches."""
        if steps < 1 or grad_accum < 1:
            raise ValueError(f"Trainer: steps ({steps}) and grad_accum ({grad_accum}) must be >= 1")
        self.model, self.objective = model, objective
        self.train_batcher, self.val_batches = train_batcher, val_batches
        self.out_dir = Path(out_dir)
        self.steps, self.lr, self.warmup_steps, self.min_lr_ratio = steps, lr, warmup_steps, min_lr_ratio
        self.grad_clip, self.grad_accum = grad_clip, grad_accum
        self.eval_interval, self.ckpt_interval, self.log_interval = eval_interval, ckpt_interval, log_interval
        self.config = dict(config or {})
        self.on_eval = on_eval
        self.progress_stream = progress_stream
        groups = param_groups_for_weight_decay(model.named_parameters(), weight_decay)
        self.optimizer = AdamW(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
        self.step = 0
        self.history = []          # every metrics record of this run, also written to metrics.jsonl

    # ----- one step -----------------------------------------------------------------------
    def learning_rate(self, step):
        """The rate for optimizer step `step` (1-based): linear warm-up, then cosine decay to min_lr."""
        warmup = min(self.warmup_steps, self.steps - 1)      # a very short run still decays
        return warmup_cosine(min(step, self.steps), base_lr=self.lr, warmup_steps=warmup,
                             max_steps=self.steps, min_lr=self.lr * self.min_lr_ratio)

    def train_step(self):
        """One optimizer step over grad_accum micro-batches; returns (mean loss, tokens seen)."""
        self.model.train()
        total_loss, tokens = 0.0, 0
        for _ in range(self.grad_accum):
            loss, n = self.objective.loss(self.model, self.train_batcher.next_batch())
            (loss * (1.0 / self.grad_accum)).backward()
            total_loss += float(loss.item()) / self.grad_accum
            tokens += n
        if not math.isfinite(total_loss):
            self.optimizer.zero_grad()
            raise TrainingDiverged(
                f"the training loss became {total_loss} at step {self.step + 1}; stopped before "
                f"updating the weights. The last good checkpoint is in {self.out_dir / CHECKPOINT_DIR} "
                f"(if one was saved). Try a lower learning rate or gradient clipping.")
        if self.grad_clip:
            clip_grad_norm_(self.model.parameters(), self.grad_clip)
        lr = self.learning_rate(self.step + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.step += 1
        return total_loss, tokens

    # ----- the loop -----------------------------------------------------------------------
    def fit(self):
        """Train until `steps`; returns the list of metrics records."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        bar = ProgressBar(self.steps, start=self.step, every=self.log_interval, stream=self.progress_stream)
        window_tokens, window_start = 0, time.perf_counter()
        try:
            while self.step < self.steps:
                loss, tokens = self.train_step()
                window_tokens += tokens
                elapsed = time.perf_counter() - window_start
                tok_per_s = window_tokens / elapsed if elapsed > 0 else 0.0
                record = {"step": self.step, "train_loss": loss, "lr": self.learning_rate(self.step),
                          "tokens_per_sec": tok_per_s}
                if self.step % self.eval_interval == 0 or self.step == self.steps:
                    record.update(self.evaluate())
                    bar.write(f"step {self.step}: " + ", ".join(
                        f"{k} {v:.4f}" for k, v in record.items() if k.startswith(("val", "mlm"))))
                    if self.on_eval is not None:
                        self.on_eval(self, bar)
                self._log(record)
                bar.update(self.step, loss=loss, **{"tok/s": f"{tok_per_s:,.0f}"})
                if self.step % self.log_interval == 0:
                    window_tokens, window_start = 0, time.perf_counter()
                if self.step % self.ckpt_interval == 0 or self.step == self.steps:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            bar.close()
            path = self.save_checkpoint()
            bar.write(f"interrupted at step {self.step}: checkpoint saved to {path.parent} "
                      f"(continue with --resume)")
            raise
        bar.close()
        return self.history

    def evaluate(self):
        self.model.eval()
        try:
            return self.objective.evaluate(self.model, self.val_batches())
        finally:
            self.model.train()

    def _log(self, record):
        self.history.append(record)
        with open(self.out_dir / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    # ----- checkpoints --------------------------------------------------------------------
    def save_checkpoint(self):
        """Weights + optimizer state + step + random states, written atomically."""
        optim_tensors, optim_meta = flatten_optimizer_state(self.optimizer.state_dict())
        tensors = {**add_prefix("model.", self.model.state_dict()), **optim_tensors}
        extra = {"step": self.step, "optimizer": optim_meta,
                 "batcher": self.train_batcher.state_dict(),
                 "default_rng": minilm_random.default_generator().bit_generator.state,
                 "module_rngs": {k: g.bit_generator.state for k, g in module_generators(self.model).items()}}
        return save_checkpoint(self.out_dir / CHECKPOINT_DIR, tensors, self.config, extra)

    def resume(self):
        """Load the checkpoint in out_dir and continue from its step (metrics after it are dropped)."""
        ckpt = load_checkpoint(self.out_dir / CHECKPOINT_DIR)
        self.model.load_state_dict(take_prefix("model.", ckpt.tensors))
        optim_tensors = {k: v for k, v in ckpt.tensors.items() if k.startswith("optim.")}
        state = unflatten_optimizer_state(optim_tensors, ckpt.extra_state["optimizer"])
        self.optimizer.load_state_dict(state)
        self.train_batcher.load_state_dict(ckpt.extra_state["batcher"])
        minilm_random.default_generator().bit_generator.state = ckpt.extra_state["default_rng"]
        saved_rngs = ckpt.extra_state.get("module_rngs", {})
        for name, gen in module_generators(self.model).items():
            if name not in saved_rngs:
                raise KeyError(f"resume: the checkpoint has no random state for module {name!r}")
            gen.bit_generator.state = saved_rngs[name]
        self.step = int(ckpt.extra_state["step"])
        metrics = self.out_dir / METRICS_FILE
        if metrics.exists():
            kept = [line for line in metrics.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line)["step"] <= self.step]
            atomic_write_text(metrics, "".join(line + "\n" for line in kept))
            self.history = [json.loads(line) for line in kept]
        return self.step

