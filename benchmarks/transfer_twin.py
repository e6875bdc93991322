"""minilm's fine-tuning of all-MiniLM-L6-v2 against a PyTorch twin: same start, same batches, same optimizer.

For full fine-tuning and for prompt tuning on WN-noun-10, this script

  1. builds minilm's classifier exactly as minilm.transfer.run_transfer does (the installed
     all-MiniLM-L6-v2, np.random.default_rng(seed) for the head and soft prompt, the same
     10% stratified hold-out for validation, the same tokenization), with dropout off;
  2. builds a PyTorch twin written here by hand (BERT embeddings + LayerNorm, 6 post-LN blocks
     with a fused q/k/v projection, exact erf GELU, masked-mean pooling, the head, and the soft
     prompt spliced in right after [CLS]) and copies minilm's initial parameters into it;
  3. trains both in lockstep on the very same padded batches (minilm's seeded permutation and
     pad_batch), with AdamW built from minilm's own parameter groups (same lr, betas, eps and
     weight decay per group), the same warm-up + cosine learning rate per step
     (minilm.optim.warmup_cosine) and the same gradient clipping;
  4. records both per-step losses, the validation accuracy after every epoch and the test
     accuracy (800 texts) at the end;
  5. times one training step of each library side by side: the median of 10 steps (after 2
     untimed ones) on the first training batch (32 texts padded to their longest, 42 tokens),
     at the same thread count; wall time, and the process's CPU time, which a shared machine
     disturbs less;
  6. prints a table, and writes benchmarks/results/transfer_twin.json and a plot of both loss
     curves per method (benchmarks/results/transfer_twin.png).

If minilm's layers, autograd and optimizer are right, the two loss curves agree step for step
to float32 rounding, and the accuracies agree to within a text or two. --max-steps N stops both
after N steps but keeps the full run's learning-rate schedule (so its first steps are warm-up;
step 1's rate is 0, as in train_classifier).

Why dropout is off: each library would draw its own random dropout masks, so with dropout on
the two runs differ by sampling noise from the first step and cannot be compared step by step.
The classifier's dropout is set to 0 (FinetuneConfig(dropout=0.0)) and so is the encoder's own:
all-MiniLM-L6-v2's config.json has hidden_dropout_prob = attention_probs_dropout_prob = 0.1, and
minilm applies both whenever the model is in training mode, so every Dropout module's p and every
attention's dropout_p is set to 0 after the model is built. The accuracies here are therefore
those of the dropout-free variant, not of run_transfer's defaults (benchmarks/bench_transfer.py).

PyTorch is only an optional oracle here: it is imported lazily, inside functions, after minilm's
own step has been timed (two BLAS/OpenMP thread pools in one process were seen to slow minilm in
benchmarks/torch_twin.py), and minilm itself never needs it.

Threads: --threads N (default 1) is written into OMP_NUM_THREADS, OPENBLAS_NUM_THREADS,
MKL_NUM_THREADS and NUMBA_NUM_THREADS before numpy is imported (BLAS reads them only then, so
they cannot be changed later in the process), and passed to torch.set_num_threads.

    python benchmarks/transfer_twin.py                          # full (3 epochs) and prompt (6): ~40 min, 1 thread
    python benchmarks/transfer_twin.py --method full --max-steps 15 --out /tmp/t.json --plot /tmp/t.png
    python benchmarks/transfer_twin.py --timing-only            # only the step times, minilm vs PyTorch
"""
import argparse
import os
import sys


def _pin_threads():
    """Read --threads from the command line and pin every thread pool to it, before numpy loads.

    numpy's BLAS (OpenBLAS or MKL) and OpenMP read these variables once, when they are loaded;
    numba reads NUMBA_NUM_THREADS when it is imported. Setting them later does nothing.
    """
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--threads", type=int, default=1)
    threads = max(1, early.parse_known_args()[0].threads)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads)
    return threads


THREADS = _pin_threads()

import dataclasses  # noqa: E402  (after the thread variables, like every import below)
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import minilm  # noqa: E402
from minilm.nn import functional as F  # noqa: E402
from minilm.nn.attention import MultiHeadAttention  # noqa: E402
from minilm.nn.layers import Dropout  # noqa: E402
from minilm.optim import warmup_cosine  # noqa: E402
from minilm.optim.clip import clip_grad_norm_  # noqa: E402
from minilm.optim.lr_scheduler import WarmupCosine  # noqa: E402
from minilm.transfer import DEFAULTS, FinetuneConfig, build_classifier, load_task  # noqa: E402
from minilm.transfer.finetune import accuracy, encode_texts, make_optimizer, pad_batch, predict_logits  # noqa: E402
from minilm.transfer.run import load_base, resolve_base  # noqa: E402
from minilm.transfer.tasks import stratified_holdout  # noqa: E402

TASK = "wn-noun-10"
OUT_JSON = ROOT / "benchmarks" / "results" / "transfer_twin.json"
OUT_PLOT = ROOT / "benchmarks" / "results" / "transfer_twin.png"
TIMING_JSON = ROOT / "benchmarks" / "results" / "transfer_twin_timing.json"   # --timing-only: keeps the run's JSON
TIMED_STEPS, WARMUP_STEPS = 10, 2


# --------------------------------------------------------------------------------------------
# minilm's side: built as run_transfer builds it
# --------------------------------------------------------------------------------------------

def switch_off_dropout(model):
    """p = 0 in every Dropout and attention of `model`; returns how many were switched off.

    The encoder is loaded with the checkpoint's hidden and attention dropout (0.1); FinetuneConfig's
    dropout only covers the one before the head.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, Dropout) and module.p:
            module.p, count = 0.0, count + 1
        elif isinstance(module, MultiHeadAttention) and module.dropout_p:
            module.dropout_p, count = 0.0, count + 1
    return count


def build_minilm(method, epochs, seed=0):
    """(model, tokenizer, config, data) exactly as run_transfer makes them, dropout off.

    data: {"train", "val", "test"} Encoded texts; the held-out 10% is stratified_holdout(..., seed=0).
    """
    task = load_task(TASK)
    config = FinetuneConfig(method=method, epochs=epochs, dropout=0.0, seed=seed)
    encoder, tokenizer = load_base(resolve_base())
    gen = np.random.default_rng(config.seed)                        # run_transfer's generator: head, prompt
    model = build_classifier(config.method, encoder, len(task.classes), config, gen)
    switch_off_dropout(model)
    kept, held = stratified_holdout(task.train_labels, 0.1, seed=0)
    data = {"train": encode_texts(tokenizer, [task.train_texts[i] for i in kept], task.train_labels[kept],
                                  config.max_length),
            "val": encode_texts(tokenizer, [task.train_texts[i] for i in held], task.train_labels[held],
                                config.max_length),
            "test": encode_texts(tokenizer, task.test_texts, task.test_labels, config.max_length)}
    return model, tokenizer, config, data


def first_batch(train, config, pad_id):
    """The first batch of the first epoch (the same seeded permutation train_classifier draws)."""
    rows = np.random.default_rng(config.seed).permutation(len(train.ids))[:config.batch_size]
    ids, mask = pad_batch(train.ids, rows, pad_id)
    return ids, mask, train.labels[rows]


# --------------------------------------------------------------------------------------------
# the PyTorch twin
# --------------------------------------------------------------------------------------------

def twin_class():
    """The twin's classes, defined only when called: torch is imported here and nowhere at the top.

    Module and parameter names are minilm's own (encoder.blocks.0.self_attn.in_proj.weight, ...),
    so minilm's state copies over name for name and any missing or extra tensor is an error.
    """
    import torch
    import torch.nn as tnn
    import torch.nn.functional as TF

    class Embeddings(tnn.Module):
        """LayerNorm(vectors + position[t] + token_type[0]): vectors are word embeddings, maybe with a prompt."""

        def __init__(self, cfg):
            super().__init__()
            h = cfg.hidden_size
            self.word_embeddings = tnn.Embedding(cfg.vocab_size, h)
            self.position_embeddings = tnn.Embedding(cfg.max_position_embeddings, h)
            self.token_type_embeddings = tnn.Embedding(cfg.type_vocab_size, h)
            self.norm = tnn.LayerNorm(h, eps=cfg.layer_norm_eps)

        def forward(self, vectors):
            b, t, _ = vectors.shape
            x = vectors + self.position_embeddings(torch.arange(t))                     # + (T, H)
            x = x + self.token_type_embeddings(torch.zeros((b, t), dtype=torch.long))   # one segment: type 0
            return self.norm(x)

    class SelfAttention(tnn.Module):
        """Bidirectional multi-head attention; q, k, v from one fused projection, as minilm stores them."""

        def __init__(self, h, heads):
            super().__init__()
            self.heads = heads
            self.in_proj = tnn.Linear(h, 3 * h)
            self.out_proj = tnn.Linear(h, h)

        def forward(self, x, allowed):
            b, t, c = x.shape
            q, k, v = self.in_proj(x).split(c, dim=-1)
            q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
            # allowed (B, 1, 1, T): True where a key is a real token (or a prompt vector)
            y = TF.scaled_dot_product_attention(q, k, v, attn_mask=allowed)          # (B, nh, T, hs)
            return self.out_proj(y.transpose(1, 2).reshape(b, t, c))

    class FeedForward(tnn.Module):
        def __init__(self, h, inner):
            super().__init__()
            self.linear1, self.linear2 = tnn.Linear(h, inner), tnn.Linear(inner, h)

        def forward(self, x):
            return self.linear2(TF.gelu(self.linear1(x), approximate="none"))         # BERT's exact erf GELU

    class Block(tnn.Module):
        """Post-LN, as BERT: the LayerNorm comes after each residual sum."""

        def __init__(self, cfg):
            super().__init__()
            h = cfg.hidden_size
            self.self_attn = SelfAttention(h, cfg.num_attention_heads)
            self.ff = FeedForward(h, cfg.intermediate_size)
            self.norm1 = tnn.LayerNorm(h, eps=cfg.layer_norm_eps)
            self.norm2 = tnn.LayerNorm(h, eps=cfg.layer_norm_eps)

        def forward(self, x, allowed):
            x = self.norm1(x + self.self_attn(x, allowed))
            return self.norm2(x + self.ff(x))

    class Encoder(tnn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.embeddings = Embeddings(cfg)
            self.blocks = tnn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))

        def forward(self, vectors, attention_mask):
            allowed = attention_mask.bool()[:, None, None, :]                          # (B, T) -> (B, 1, 1, T)
            x = self.embeddings(vectors)
            for block in self.blocks:
                x = block(x, allowed)
            return x

    class Prompt(tnn.Module):
        def __init__(self, n, h):
            super().__init__()
            self.weight = tnn.Parameter(torch.zeros(n, h))                             # copied from minilm

    class TwinClassifier(tnn.Module):
        """masked-mean(encoder(tokens)) -> Linear; with a prompt, n vectors spliced in after [CLS]."""

        def __init__(self, cfg, num_classes, prompt_tokens):
            super().__init__()
            self.encoder = Encoder(cfg)
            self.prompt = Prompt(prompt_tokens, cfg.hidden_size) if prompt_tokens else None
            self.head = tnn.Linear(cfg.hidden_size, num_classes)

        def forward(self, input_ids, attention_mask):
            words = self.encoder.embeddings.word_embeddings(input_ids)                 # (B, T, H)
            attend = pool = attention_mask
            if self.prompt is not None:
                b, n = input_ids.shape[0], self.prompt.weight.shape[0]
                prompt = self.prompt.weight.expand(b, n, -1)                           # (B, n, H)
                words = torch.cat([words[:, :1], prompt, words[:, 1:]], dim=1)         # [CLS] p_1..p_n w_1 ...
                ones = torch.ones((b, n), dtype=attention_mask.dtype)
                attend = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)   # seen by all
                pool = torch.cat([attention_mask[:, :1], 0 * ones, attention_mask[:, 1:]], dim=1)  # not averaged
            hidden = self.encoder(words, attend)
            m = pool.to(hidden.dtype)
            weights = m / m.sum(dim=1, keepdim=True).clamp_min(1.0)                    # minilm's masked_mean
            return self.head((hidden * weights[..., None]).sum(dim=1))

    return TwinClassifier


def make_twin(model):
    """A TwinClassifier holding a copy of minilm `model`'s parameters, the same ones trainable."""
    import torch
    prompt_tokens = model.prompt.n_tokens if model.prompt is not None else 0
    twin = twin_class()(model.encoder.config, model.head.weight.shape[0], prompt_tokens)
    ours, theirs = dict(model.named_parameters()), dict(twin.named_parameters())
    if set(ours) != set(theirs):
        raise RuntimeError(f"twin and minilm parameters differ: only minilm {sorted(set(ours) - set(theirs))[:5]}, "
                           f"only twin {sorted(set(theirs) - set(ours))[:5]}")
    with torch.no_grad():
        for name, p in ours.items():
            if tuple(theirs[name].shape) != tuple(p.data.shape):
                raise RuntimeError(f"{name}: twin {tuple(theirs[name].shape)}, minilm {p.data.shape}")
            theirs[name].copy_(torch.from_numpy(np.array(p.data, np.float32)))
            theirs[name].requires_grad_(p.requires_grad)
    return twin


def twin_optimizer(model, optimizer, twin):
    """torch AdamW with minilm's groups: the same parameters (by name), lr, betas, eps and weight decay."""
    import torch
    name_of = {id(p): name for name, p in model.named_parameters()}
    theirs = dict(twin.named_parameters())
    groups = [{"params": [theirs[name_of[id(p)]] for p in g["params"]], "lr": g["lr"], "betas": tuple(g["betas"]),
               "eps": g["eps"], "weight_decay": g["weight_decay"]} for g in optimizer.param_groups]
    return torch.optim.AdamW(groups)


def as_torch(ids, mask, labels):
    import torch
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(np.asarray(labels, np.int64))


def twin_predict_logits(twin, data, pad_id, batch_size=64):
    """minilm's predict_logits for the twin: eval mode, shortest texts first, batches of 64."""
    import torch
    twin.eval()
    order = np.argsort([len(r) for r in data.ids], kind="stable")
    out = None
    with torch.no_grad():
        for first in range(0, len(order), batch_size):
            rows = order[first:first + batch_size]
            ids, mask = pad_batch(data.ids, rows, pad_id)
            logits = twin(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
            if out is None:
                out = np.zeros((len(order), logits.shape[1]), np.float32)
            out[rows] = logits
    twin.train()
    return out


# --------------------------------------------------------------------------------------------
# one step of each, and their timing
# --------------------------------------------------------------------------------------------

def minilm_step(model, optimizer, params, ids, mask, labels, grad_clip):
    """train_classifier's step: forward, mean cross-entropy, backward, clip, AdamW. (loss, grad norm, logits)."""
    logits = model(ids, mask)
    loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    norm = clip_grad_norm_(params, grad_clip) if grad_clip else float("nan")
    optimizer.step()
    return float(loss.item()), norm, logits.numpy()


def twin_step(twin, optimizer, params, ids, mask, labels, grad_clip):
    import torch
    import torch.nn.functional as TF
    logits = twin(ids, mask)
    loss = TF.cross_entropy(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip)) if grad_clip else float("nan")
    optimizer.step()
    return float(loss.item()), norm, logits.detach().numpy()


def median_ms(step, n=TIMED_STEPS, warmup=WARMUP_STEPS):
    """(wall, cpu): median milliseconds of `step()` over n calls, after `warmup` untimed ones.

    The CPU time of the process is reported beside the wall time: on a shared machine the wall
    time also counts the time other jobs held the core, the CPU time (one thread) much less so.
    """
    for _ in range(warmup):
        step()
    wall, cpu = [], []
    for _ in range(n):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 1000.0 * statistics.median(wall), 1000.0 * statistics.median(cpu)


def time_minilm(method, epochs):
    """ms per minilm training step on the first training batch (batch 32, padded to its longest text)."""
    model, tok, config, data = build_minilm(method, epochs)
    optimizer = make_optimizer(model, config)
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    ids, mask, labels = first_batch(data["train"], config, tok.pad_token_id)
    model.train()
    ms = median_ms(lambda: minilm_step(model, optimizer, params, ids, mask, labels, config.grad_clip))
    return ms, model, optimizer, (ids, mask, labels), config


def time_twin(model, optimizer, batch, config):
    """ms per twin training step, the twin made from the same (already stepped) minilm model."""
    twin = make_twin(model)
    topt = twin_optimizer(model, optimizer, twin)
    params = [p for p in twin.parameters() if p.requires_grad]
    ids, mask, labels = as_torch(*batch)
    twin.train()
    return median_ms(lambda: twin_step(twin, topt, params, ids, mask, labels, config.grad_clip))


# --------------------------------------------------------------------------------------------
# training in lockstep
# --------------------------------------------------------------------------------------------

def train_both(method, epochs, max_steps=None, log=print):
    """Train minilm and its twin on the same batches; returns this method's results dict."""
    import torch
    model, tok, config, data = build_minilm(method, epochs)
    pad, train = tok.pad_token_id, data["train"]
    twin = make_twin(model)                                          # before any step: the identical start
    # minilm's side is train_classifier's loop, written out so it can stop after max_steps and
    # walk in step with the twin: same rng, optimizer, schedule and clipping
    rng = np.random.default_rng(config.seed)
    steps_per_epoch = -(-len(train.ids) // config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = int(config.warmup_fraction * total)
    optimizer = make_optimizer(model, config)
    schedule = WarmupCosine(optimizer, warmup_steps=warmup, max_steps=total)
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    topt = twin_optimizer(model, optimizer, twin)
    # each group's peak rate: WarmupCosine has already written step 0's rate (0) into the groups
    base_lrs = list(schedule.base_lrs)
    tparams = [p for p in twin.parameters() if p.requires_grad]
    stop = total if max_steps is None else min(total, max_steps)
    log(f"\n{method}: {config.epochs} epochs x {steps_per_epoch} steps = {total} (warm-up {warmup})"
        f"{'' if stop == total else f', stopping after {stop}'}; lr {config.lr:g}, head_lr {config.head_lr:g}; "
        f"trainable {sum(p.data.size for p in params):,} numbers")

    steps, epochs_rows, seconds = [], [], {"minilm": 0.0, "torch": 0.0}
    model.train()
    twin.train()
    for epoch in range(config.epochs):
        order = rng.permutation(len(train.ids))
        for first in range(0, len(order), config.batch_size):
            if len(steps) == stop:
                break
            rows = order[first:first + config.batch_size]
            ids, mask = pad_batch(train.ids, rows, pad)
            labels = train.labels[rows]
            lr = optimizer.param_groups[0]["lr"]                    # the rate this step uses (group 0)

            start = time.perf_counter()
            loss_a, norm_a, logits_a = minilm_step(model, optimizer, params, ids, mask, labels, config.grad_clip)
            schedule.step()
            seconds["minilm"] += time.perf_counter() - start

            start = time.perf_counter()
            for g, base in zip(topt.param_groups, base_lrs):       # minilm's WarmupCosine, step len(steps)
                g["lr"] = warmup_cosine(len(steps), base_lr=base, warmup_steps=warmup, max_steps=total)
            loss_b, norm_b, logits_b = twin_step(twin, topt, tparams, *as_torch(ids, mask, labels),
                                                 config.grad_clip)
            seconds["torch"] += time.perf_counter() - start

            steps.append({"step": len(steps) + 1, "epoch": epoch + 1, "lr": lr, "tokens": int(ids.shape[1]),
                          "loss_minilm": loss_a, "loss_torch": loss_b,
                          "grad_norm_minilm": norm_a, "grad_norm_torch": norm_b,
                          "logits_max_abs_diff": float(np.abs(logits_a - logits_b).max())})
            if len(steps) <= 3 or len(steps) % 10 == 0 or len(steps) == stop:
                log(f"  step {len(steps):>4}  loss minilm {loss_a:.6f} torch {loss_b:.6f}  "
                    f"rel diff {abs(loss_a - loss_b) / abs(loss_b):.1e}  grad norm {norm_a:.4f} / {norm_b:.4f}")
        done = [s for s in steps if s["epoch"] == epoch + 1]
        if not done:
            break
        val_a = accuracy(predict_logits(model, data["val"], pad), data["val"].labels)
        val_b = accuracy(twin_predict_logits(twin, data["val"], pad), data["val"].labels)
        epochs_rows.append({"epoch": epoch + 1, "steps": len(done), "complete": len(done) == steps_per_epoch,
                            "mean_loss_minilm": float(np.mean([s["loss_minilm"] for s in done])),
                            "mean_loss_torch": float(np.mean([s["loss_torch"] for s in done])),
                            "val_accuracy_minilm": val_a, "val_accuracy_torch": val_b})
        log(f"  epoch {epoch + 1}: val accuracy minilm {val_a:.4f}, torch {val_b:.4f}")
        if len(steps) == stop:
            break

    model.eval()
    test_a = accuracy(predict_logits(model, data["test"], pad), data["test"].labels)
    test_b = accuracy(twin_predict_logits(twin, data["test"], pad), data["test"].labels)
    # how far the trained parameters drifted apart, relative to each tensor's own size
    theirs = dict(twin.named_parameters())
    drift = max(float(np.abs(p.data - theirs[n].detach().numpy()).max() / max(np.abs(p.data).max(), 1e-12))
                for n, p in model.named_parameters() if p.requires_grad)
    rel = [abs(s["loss_minilm"] - s["loss_torch"]) / abs(s["loss_torch"]) for s in steps]
    return {"method": method, "config": dataclasses.asdict(config), "total_steps": total, "steps_run": len(steps),
            "warmup_steps": warmup, "train_examples": len(train.ids), "val_examples": len(data["val"].ids),
            "test_examples": len(data["test"].ids),
            "test_accuracy_minilm": test_a, "test_accuracy_torch": test_b,
            "first_step_loss_abs_diff": abs(steps[0]["loss_minilm"] - steps[0]["loss_torch"]),
            "max_step_loss_rel_diff": max(rel), "last_step_loss_rel_diff": rel[-1],
            "max_trainable_param_rel_diff": drift,
            "train_seconds_minilm": round(seconds["minilm"], 2), "train_seconds_torch": round(seconds["torch"], 2),
            "epochs": epochs_rows, "steps": steps}


# --------------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------------

def thread_report(torch_threads=None):
    """What each thread pool was set to; threadpoolctl, where installed, says what BLAS really uses."""
    parts = [f"env OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS={THREADS}"]
    try:
        from threadpoolctl import threadpool_info
        pools = threadpool_info()
        parts.append("threadpoolctl: " + ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in pools))
    except ImportError:
        parts.append("threadpoolctl not installed: BLAS threads are whatever the env variables set at numpy import")
    if "numba" in sys.modules:
        parts.append(f"numba {sys.modules['numba'].get_num_threads()}")
    if torch_threads is not None:
        parts.append(f"torch {torch_threads}")
    return "; ".join(parts)


def print_table(results, timing):
    print(f"\n{'method':<8} {'acc minilm':>10} {'acc torch':>10} {'diff pts':>9} {'loss minilm':>12} "
          f"{'loss torch':>11} {'ms minilm':>10} {'ms torch':>9} {'ratio':>6}")
    for method in sorted(set(results) | set(timing), key=("full", "prompt").index):
        r, t = results.get(method), timing.get(method)
        if r:
            last = r["epochs"][-1]
            cells = (f"{r['test_accuracy_minilm']:>10.4f} {r['test_accuracy_torch']:>10.4f} "
                     f"{100 * (r['test_accuracy_minilm'] - r['test_accuracy_torch']):>+9.2f} "
                     f"{last['mean_loss_minilm']:>12.6f} {last['mean_loss_torch']:>11.6f}")
        else:
            cells = f"{'-':>10} {'-':>10} {'-':>9} {'-':>12} {'-':>11}"
        times = (f"{t['ms_minilm']:>10.1f} {t['ms_torch']:>9.1f} {t['ratio']:>6.2f}" if t else
                 f"{'-':>10} {'-':>9} {'-':>6}")
        print(f"{method:<8} {cells} {times}")
    print("acc: test accuracy (800 texts); loss: mean training loss of the last epoch run; "
          "ms: median wall time of a training step, batch 32; ratio = minilm / torch")


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    methods = list(results)
    fig, axes = plt.subplots(2, len(methods), figsize=(5.5 * len(methods), 5.6), dpi=100, squeeze=False,
                             sharex="col", gridspec_kw={"height_ratios": [2.2, 1]})
    for col, method in enumerate(methods):
        steps = results[method]["steps"]
        x = [s["step"] for s in steps]
        a, b = [s["loss_minilm"] for s in steps], [s["loss_torch"] for s in steps]
        top, bottom = axes[0, col], axes[1, col]
        top.plot(x, a, lw=1.6, alpha=0.7, label="minilm")
        top.plot(x, b, "--", lw=1.0, label="PyTorch twin")
        top.set_title(f"{method}: training loss per step")
        top.set_ylabel("cross-entropy (nats)")
        top.grid(alpha=0.3)
        top.legend()
        bottom.semilogy(x, [max(abs(p - q) / abs(q), 1e-10) for p, q in zip(a, b)], lw=0.8)
        bottom.set_ylabel("|minilm - torch| / torch")
        bottom.set_title("relative loss difference (an exact 0 is drawn at 1e-10)", fontsize=9)
        bottom.set_xlabel("step")
        bottom.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=("full", "prompt", "both"), default="both")
    ap.add_argument("--epochs", type=int, default=None, help="default: the method's own (minilm.transfer.DEFAULTS)")
    ap.add_argument("--max-steps", type=int, default=None,
                    help="stop after this many steps (the learning-rate schedule stays the full run's)")
    ap.add_argument("--timing-only", action="store_true", help="only time a training step of each library")
    ap.add_argument("--threads", type=int, default=1, help="threads for numpy's BLAS, numba and torch (default 1)")
    ap.add_argument("--out", default=None, help=f"results JSON (default {OUT_JSON.relative_to(ROOT)}, "
                                                 f"with --timing-only {TIMING_JSON.relative_to(ROOT)})")
    ap.add_argument("--plot", default=str(OUT_PLOT), help=f"loss-curve PNG (default {OUT_PLOT.relative_to(ROOT)})")
    args = ap.parse_args()
    if args.max_steps is not None and args.max_steps < 1:
        ap.error("--max-steps must be >= 1")
    if args.epochs is not None and args.epochs < 1:
        ap.error("--epochs must be >= 1")
    methods = ("full", "prompt") if args.method == "both" else (args.method,)
    epochs = {m: args.epochs if args.epochs is not None else DEFAULTS[m]["epochs"] for m in methods}
    print(f"minilm {minilm.__version__} backend={minilm.get_backend()}; task {TASK}; methods {', '.join(methods)}")

    # minilm's steps are timed first, before torch is imported into the process
    timing, pending = {}, {}
    for method in methods:
        ms, model, optimizer, batch, config = time_minilm(method, epochs[method])
        pending[method] = (ms, model, optimizer, batch, config)

    try:
        import torch
    except ImportError:
        sys.exit("benchmarks/transfer_twin.py needs PyTorch (pip install torch); minilm itself does not")
    torch.set_num_threads(THREADS)
    print(f"torch {torch.__version__}; threads: {thread_report(torch.get_num_threads())}")
    for method, ((ms, cpu), model, optimizer, batch, config) in pending.items():
        ms_torch, cpu_torch = time_twin(model, optimizer, batch, config)
        timing[method] = {"ms_minilm": round(ms, 1), "ms_torch": round(ms_torch, 1),
                          "ratio": round(ms / ms_torch, 2), "cpu_ms_minilm": round(cpu, 1),
                          "cpu_ms_torch": round(cpu_torch, 1), "cpu_ratio": round(cpu / cpu_torch, 2),
                          "batch": list(batch[0].shape), "timed_steps": TIMED_STEPS}
        print(f"{method}: one training step (batch {batch[0].shape[0]} x {batch[0].shape[1]} tokens): "
              f"minilm {ms:.1f} ms, torch {ms_torch:.1f} ms, minilm/torch {ms / ms_torch:.2f}x "
              f"(CPU time {cpu:.1f} / {cpu_torch:.1f} ms, {cpu / cpu_torch:.2f}x)")
    del pending

    results = {}
    if not args.timing_only:
        for method in methods:
            results[method] = train_both(method, epochs[method], args.max_steps)

    print_table(results, timing)
    for method, r in results.items():
        print(f"{method}: step 1 loss |diff| {r['first_step_loss_abs_diff']:.2e}; loss rel diff max "
              f"{r['max_step_loss_rel_diff']:.2e}, at the last step {r['last_step_loss_rel_diff']:.2e}; "
              f"trainable params max rel diff {r['max_trainable_param_rel_diff']:.2e}; "
              f"val accuracy per epoch minilm {[e['val_accuracy_minilm'] for e in r['epochs']]}, "
              f"torch {[e['val_accuracy_torch'] for e in r['epochs']]}")
    report = {"task": TASK, "threads": THREADS, "thread_report": thread_report(torch.get_num_threads()),
              "minilm": minilm.__version__, "backend": minilm.get_backend(), "torch": torch.__version__,
              "max_steps": args.max_steps, "timing_only": args.timing_only, "timing": timing, "results": results}
    out = Path(args.out) if args.out else (TIMING_JSON if args.timing_only else OUT_JSON)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"results: {out}")
    if results:
        plot(results, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
