"""The Trainer: one loop that pretrains a GPT (autoregressive LM) or a BERT (masked LM).

Each optimizer step:
    for each of grad_accum micro-batches: loss = objective(model, batch); (loss / grad_accum).backward()
    stop if the loss is not finite (the weights and the last checkpoint stay good), after
        replaying the step's forward passes under detect_anomaly to name the op that made the NaN
    clip the global gradient norm, set the learning rate (warm-up, then cosine decay), AdamW step
Every eval_interval steps: validation loss / perplexity (and MLM accuracy).
Every ckpt_interval steps, at the end and on Ctrl-C: a checkpoint with the
weights, the optimizer state, the step and every random state, so `resume()`
continues with exactly the loss curve an uninterrupted run would have drawn.
The run folder's layout, and the checks on everything read back from it, are in
`minilm.run_folder`.

Data parallelism: give the Trainer an MPI communicator (`comm=`, e.g.
`minilm.distributed.world()` under `mpirun -n N`) and every rank trains a
replica on its 1/N of each global batch, gradients averaged by all-reduce;
rank 0 alone writes the run folder and evaluates (minilm.distributed.training).
`zero=True` also shards AdamW's moments over the ranks (ZeRO stage 1).
Checkpoints are the same files whatever the number of ranks, so a run can
resume on a different N.

Ctrl-C is honoured only between steps: a checkpoint taken halfway through a
step (its batch drawn, its dropout masks used, half its weights updated) would
not be a state the uninterrupted run ever passed through. So while `fit()`
runs, the first Ctrl-C only asks to stop; the loop finishes the step (and its
evaluation and metrics line), saves and raises KeyboardInterrupt. A second
Ctrl-C stops at once: the step in flight is undone if its weights were not yet
touched, and otherwise abandoned, keeping the last complete checkpoint.
"""
import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np

from minilm import random as minilm_random
from minilm.autograd.anomaly import AnomalyError, detect_anomaly
from minilm.distributed.training import DataParallel, OneProcess, discard_stream
from minilm.io.atomic import atomic_folder, atomic_write_text
from minilm.io.checkpoint import WEIGHTS_NAME, add_prefix, load_checkpoint, save_checkpoint, take_prefix
from minilm.optim import AdamW, clip_grad_norm_, flatten_optimizer_state, param_groups_for_weight_decay
from minilm.optim import WarmupCosine, unflatten_optimizer_state
from minilm.progress import ProgressBar
from minilm.run_folder import CHECKPOINT_DIR, METRICS_FILE, RunFolderError, check_training_state
from minilm.run_folder import find_checkpoint, load_weights, read_metrics, run_lock


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


_NOT_INSTALLED = object()       # fit() ran outside the main thread: no Ctrl-C handler to restore


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and, if it can, the op that made it."""


@dataclasses.dataclass
class TrainConfig:
    """How the Trainer trains: the optimizer, the schedule, and how often it evaluates, logs and saves.

    (minilm.pretrain.PretrainConfig is a TrainConfig with the model, corpus and tokenizer added.)
    """
    steps: int = 2000               # optimizer steps
    lr: float = 1e-3                # peak learning rate (AdamW)
    min_lr_ratio: float = 0.1       # the cosine decay ends at lr * min_lr_ratio
    warmup_steps: int = 100         # linear warm-up from 0 to lr
    weight_decay: float = 0.1       # AdamW's decoupled decay, on matrices only (param_groups_for_weight_decay)
    grad_clip: float = 1.0          # clip the global gradient norm to this (0 = off)
    grad_accum: int = 1             # micro-batches per optimizer step
    eval_interval: int = 200        # evaluate every N steps (and at the end)
    ckpt_interval: int = 500        # write a checkpoint every N steps (and at the end, and on Ctrl-C)
    log_interval: int = 50          # a progress line every N steps when not in a terminal
    out_dir: str = "runs/gpt"       # the run folder: checkpoint/, metrics.jsonl, ...


class Trainer:
    betas = (0.9, 0.99)             # AdamW's (beta1, beta2), as nanoGPT's small models

    def __init__(self, model, objective, train_batcher, val_batches, config=None, *,
                 checkpoint_config=None, on_eval=None, progress_stream=None, comm=None, zero=False):
        """Trainer(model, objective, train_batcher, val_batches, config: TrainConfig).

        objective: .loss(model, batch) and .evaluate(model, batches) (minilm.objectives);
        train_batcher: .next_batch(), .state_dict(), .load_state_dict();
        val_batches: a function returning a fresh iterable of validation batches;
        checkpoint_config: the JSON-able dict every checkpoint saves as config.json;
        on_eval(trainer, progress_bar): called after each evaluation (e.g. to print samples);
        comm: an MPI communicator to train data-parallel over its ranks (None or one rank: alone);
        zero: with comm, shard the optimizer state over the ranks (ZeRO stage 1).
        """
        self.config = config = config if config is not None else TrainConfig()
        if config.steps < 1 or config.grad_accum < 1:
            raise ValueError(f"Trainer: steps ({config.steps}) and grad_accum ({config.grad_accum}) must be >= 1")
        self.model, self.objective = model, objective
        self.train_batcher, self.val_batches = train_batcher, val_batches
        self.out_dir = Path(config.out_dir)
        self.checkpoint_config = dict(checkpoint_config or {})
        self.on_eval = on_eval
        self.progress_stream = progress_stream
        if comm is not None and comm.Get_size() > 1:
            batch_size = getattr(train_batcher, "batch_size", None)
            if batch_size is None:
                raise TypeError("Trainer: data-parallel training needs a batcher with a batch_size attribute")
            self.run = DataParallel(model, comm, batch_size, config=self.checkpoint_config, zero=zero)
        else:
            self.run = OneProcess()
        self.run.own_dropout_streams(module_generators(model))      # rank r > 0: its own dropout masks
        groups = param_groups_for_weight_decay(model.named_parameters(), config.weight_decay)
        self.optimizer = self.run.make_optimizer(AdamW, groups, lr=config.lr, betas=self.betas,
                                                 weight_decay=config.weight_decay)
        warmup = min(config.warmup_steps, config.steps - 1)      # a very short run still decays
        self.scheduler = WarmupCosine(self.optimizer, warmup_steps=warmup, max_steps=config.steps,
                                      min_lr_ratio=config.min_lr_ratio)
        self.step = 0
        self.history = []          # every metrics record of this run, also written to metrics.jsonl
        self._stop_requested = False   # set by the first Ctrl-C; honoured at the next step boundary
        self._at_boundary = True       # the state is a whole number of steps, all logged: safe to save
        self._saved_step = None        # the step of the last checkpoint this trainer wrote or loaded

    # ----- one step -----------------------------------------------------------------------
    def train_step(self):
        """One optimizer step over grad_accum micro-batches; returns (mean loss, tokens seen).

        A KeyboardInterrupt before the weights change undoes the step (the random
        states go back to where it began) and is raised again.
        """
        start = self.random_states()        # to undo the step (Ctrl-C) or to replay it (NaN)
        self.model.train()
        run, accum = self.run, self.config.grad_accum
        batches, total_loss, tokens = [], 0.0, 0
        try:
            for k in range(accum):
                batch = self.train_batcher.next_batch()      # the global batch: the same on every rank
                local = run.shard(batch)                     # this rank's share (all of it in one process)
                batches.append(local)
                scale = run.loss_scale(self.objective, local, batch)     # 1.0 except for masked-LM shards
                loss, n = self.objective.loss(self.model, local)
                with run.backward_context(last=k == accum - 1):
                    (loss * (scale / accum)).backward()
                total_loss += float(loss.item()) * scale / accum
                tokens += n
        except KeyboardInterrupt:           # the weights are untouched: undo the draws, so a checkpoint is whole
            self.optimizer.zero_grad()
            self.load_random_states(start)
            self._at_boundary = True
            raise
        run.finish()                                         # average the gradients over the ranks
        total_loss, tokens = run.reduce_step(total_loss, tokens)     # the global batch's loss, on every rank
        if not math.isfinite(total_loss):
            where = self._locate_non_finite(batches, start)
            raise TrainingDiverged(
                f"the training loss became {total_loss} at step {self.step + 1}; stopped before "
                f"updating the weights. {where} The last good checkpoint is in {self.out_dir / CHECKPOINT_DIR} "
                f"(if one was saved). Try a lower learning rate or gradient clipping.")
        if self.config.grad_clip:
            # After run.finish() every rank holds the whole averaged gradient, so this norm is the
            # global batch's, the same on every rank, and every rank clips by the same factor.
            clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scheduler.step()           # the rate of this step, self.step + 1 (step 1 is the first update)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.step += 1
        return total_loss, tokens

    def _locate_non_finite(self, batches, start):
        """Replay the step's forward passes under detect_anomaly (nothing is updated); say where the NaN was born.

        Only the forward: the loss is what was not finite, and a backward from a
        non-finite loss would blame ops that merely passed the NaN on.
        """
        self.optimizer.zero_grad()
        after = self.random_states()
        self.load_random_states(start)              # the same dropout masks as the failing pass
        try:
            with detect_anomaly(step=self.step + 1):
                for batch in batches:
                    loss, _ = self.objective.loss(self.model, batch)
                    if not math.isfinite(float(loss.item())):
                        break
        except AnomalyError as err:
            return f"Replayed under detect_anomaly: {err}."
        finally:
            self.load_random_states(after)
        return ("Replayed under detect_anomaly, no op turned finite values into NaN or inf, so the "
                "non-finite value came from outside the ops (the data, a constant or the weights).")

    # ----- the loop -----------------------------------------------------------------------
    def fit(self):
        """Train until config.steps; returns the list of metrics records. Ctrl-C: see the module docstring."""
        with contextlib.ExitStack() as stack:
            def claim():
                self.out_dir.mkdir(parents=True, exist_ok=True)
                stack.enter_context(run_lock(self.out_dir))     # one writer per run folder
            self.run.on_main(claim, f"lock the run folder {self.out_dir}")     # (rank 0 is the writer)
            return self._fit()

    def _fit(self):
        cfg = self.config
        stream = self.progress_stream if self.run.is_main else discard_stream()    # one bar, rank 0's
        bar = ProgressBar(cfg.steps, start=self.step, every=cfg.log_interval, stream=stream)
        window_tokens, window_start = 0, time.perf_counter()
        previous_handler = self._install_interrupt_handler()
        try:
            while self.step < cfg.steps:
                self._at_boundary = False
                loss, tokens = self.train_step()
                window_tokens += tokens
                elapsed = time.perf_counter() - window_start
                tok_per_s = window_tokens / elapsed if elapsed > 0 else 0.0
                record = {"step": self.step, "train_loss": loss, "lr": self.scheduler.get_last_lr()[0],
                          "tokens_per_sec": tok_per_s}
                if (self.step % cfg.eval_interval == 0 or self.step == cfg.steps) and self.run.is_main:
                    record.update(self.evaluate())        # rank 0 alone: the others go on to the next step
                    bar.write(f"step {self.step}: " + ", ".join(
                        f"{k} {v:.4f}" for k, v in record.items() if k.startswith(("val", "mlm"))))
                    if self.on_eval is not None:
                        self.on_eval(self, bar)
                self._log(record)
                self._at_boundary = True
                bar.update(self.step, loss=loss, **{"tok/s": f"{tok_per_s:,.0f}"})
                if self.step % cfg.log_interval == 0:
                    window_tokens, window_start = 0, time.perf_counter()
                if self.step % cfg.ckpt_interval == 0 or self.step == cfg.steps:
                    self._at_boundary = False            # a Ctrl-C inside the save keeps the last checkpoint
                    self.save_checkpoint()
                    self._at_boundary = True
                if self.run.any(self._stop_requested):       # every rank stops after the same step
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            bar.close()
            if self._at_boundary:
                if self._saved_step != self.step:
                    self._at_boundary = False
                    self.save_checkpoint()
                bar.write(f"interrupted after step {self.step}: checkpoint saved to "
                          f"{self.out_dir / CHECKPOINT_DIR} (continue with --resume)")
            else:
                bar.write(f"stopped at once: the last complete checkpoint in {self.out_dir / CHECKPOINT_DIR} "
                          f"is kept (continue with --resume)")
            raise
        finally:
            self._stop_requested = False
            if previous_handler is not _NOT_INSTALLED:
                signal.signal(signal.SIGINT, previous_handler)
        bar.close()
        return self.history

    def _install_interrupt_handler(self):
        """Make the first Ctrl-C a request to stop at the next step boundary; returns the old handler.

        Signal handlers can only be set from the main thread; elsewhere Ctrl-C keeps
        its default (a KeyboardInterrupt in the main thread), and _NOT_INSTALLED is returned.
        """
        if threading.current_thread() is not threading.main_thread():
            return _NOT_INSTALLED

        def request_stop(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            # os.write, not print: the handler may run while the progress bar is mid-write
            os.write(2, b"\nCtrl-C: finishing this step, then saving (Ctrl-C again to stop at once)\n")

        previous = signal.signal(signal.SIGINT, request_stop)
        return signal.default_int_handler if previous is None else previous   # None: one set outside Python

    def evaluate(self):
        self.model.eval()
        try:
            return self.objective.evaluate(self.model, self.val_batches())
        finally:
            self.model.train()

    def _log(self, record):
        self.history.append(record)
        if not self.run.is_main:
            return
        with open(self.out_dir / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    # ----- checkpoints --------------------------------------------------------------------
    def random_states(self):
        """Every random state training draws from: the batcher's, the global generator, dropout's."""
        return {"batcher": self.train_batcher.state_dict(),
                "default_rng": minilm_random.default_generator().bit_generator.state,
                "module_rngs": {k: g.bit_generator.state for k, g in module_generators(self.model).items()}}

    def load_random_states(self, states):
        self.train_batcher.load_state_dict(states["batcher"])
        minilm_random.default_generator().bit_generator.state = states["default_rng"]
        for name, gen in module_generators(self.model).items():
            gen.bit_generator.state = states["module_rngs"][name]

    def training_state(self):
        """(tensors, extra_state) of a checkpoint: weights and Adam moments; step, optimizer meta, random states."""
        optim_tensors, optim_meta = flatten_optimizer_state(self.optimizer.state_dict())
        tensors = {**add_prefix("model.", self.model.state_dict()), **optim_tensors}
        return tensors, {"step": self.step, "optimizer": optim_meta, **self.random_states()}

    def save_checkpoint(self):
        """Write out_dir/checkpoint/ as a whole (the previous one stays until this one is complete).

        Returns the path of the weights file.
        """
        tensors, extra = self.training_state()      # on every rank: with zero=True it gathers the moments
        folder = self.out_dir / CHECKPOINT_DIR

        def write():
            with atomic_folder(folder) as tmp:
                save_checkpoint(tmp, tensors, self.checkpoint_config, extra)
        self.run.on_main(write, f"write the checkpoint {folder}")
        self._saved_step = self.step
        return folder / WEIGHTS_NAME

    def load_training_state(self, ckpt):
        """Continue from a loaded Checkpoint; every field is checked first (RunFolderError names it)."""
        file = ckpt.path
        optim_tensors = {k: v for k, v in ckpt.tensors.items() if k.startswith("optim.")}
        extra = ckpt.extra_state
        step = check_training_state(file, extra, optimizer=self.optimizer,
                                    batcher_state=self.train_batcher.state_dict(),
                                    generators=module_generators(self.model),
                                    optim_tensor_names=list(optim_tensors))
        if step > self.config.steps:
            raise RunFolderError(f"{file}: the checkpoint is at step {step}, past steps={self.config.steps}; "
                                 f"give at least --steps {step}")
        load_weights(self.model, take_prefix("model.", ckpt.tensors), file)
        try:
            self.optimizer.load_state_dict(unflatten_optimizer_state(optim_tensors, extra["optimizer"]))
        except ValueError as err:
            raise RunFolderError(f"{file}: {err}") from None
        self.load_random_states(extra)
        self.run.own_dropout_streams(module_generators(self.model))    # the checkpoint holds rank 0's
        self.step = self._saved_step = self.scheduler.last_step = step    # the schedule is a function of the step

    def resume(self, checkpoint=None):
        """Continue from the checkpoint in out_dir, or from `checkpoint` (a loaded Checkpoint, e.g. the one
        prepare() already read), at its step; metrics after that step are dropped."""
        if checkpoint is None:
            folder = find_checkpoint(self.out_dir)
            if folder is None:
                raise RunFolderError(f"{self.out_dir / CHECKPOINT_DIR}: no checkpoint to resume from")
            checkpoint = load_checkpoint(folder)
        self.load_training_state(checkpoint)
        metrics = self.out_dir / METRICS_FILE
        self.history = read_metrics(metrics, self.step)
        if metrics.exists():
            self.run.on_main(lambda: atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in self.history)),
                             f"rewrite {metrics}")
        return self.step
