"""Train a small GPT on short (prompt, answer) sequences, and read its greedy answers.

The addition and hypernym applications share this: each example is a prompt
followed by the answer the model must write, and only the answer is scored.

    tokens   1 2 3 + 0 4 5 = 8 6 1 0        prompt "123+045=", answer "8610"
    inputs   1 2 3 + 0 4 5 = 8 6 1          x = tokens[:-1]
    targets  . . . . . . . 8 6 1 0          y = tokens[1:], "." = -100 (not scored)

GPT.forward ignores targets equal to -100, so the loss is the cross-entropy of
the answer tokens only: the model is never asked to predict the random
operands, which it cannot, and which would only add noise to the gradient.
Rows of different lengths are right-padded; padding is never scored either.

The loop is written out (no Trainer) so a learner can read one step:
sample a batch, forward, backward, clip, AdamW step, learning-rate schedule.
"""
import time

import numpy as np

from minilm.autograd.grad_mode import no_grad
from minilm.generate import generate
from minilm.models.gpt import GPT
from minilm.models.gpt_config import GPTConfig
from minilm.optim import AdamW, WarmupCosine, clip_grad_norm_, param_groups_for_weight_decay

IGNORE = -100  # GPT.forward's ignore_index


def pack(prompts, answers, pad_id):
    """Token-id lists -> inputs x (N, T), targets y (N, T) with -100 outside the answers.

    prompts[i] and answers[i] are lists of ids; T = longest prompt + answer - 1.
    """
    if len(prompts) != len(answers) or not prompts:
        raise ValueError(f"pack: need as many prompts as answers (>= 1), got {len(prompts)} and {len(answers)}")
    rows = [list(p) + list(a) for p, a in zip(prompts, answers)]
    if any(len(p) == 0 or len(a) == 0 for p, a in zip(prompts, answers)):
        raise ValueError("pack: every prompt and every answer needs at least one token")
    t = max(len(r) for r in rows) - 1
    x = np.full((len(rows), t), pad_id, dtype=np.int64)                        # (N, T)
    y = np.full((len(rows), t), IGNORE, dtype=np.int64)                        # (N, T)
    for i, (p, row) in enumerate(zip(prompts, rows)):
        x[i, :len(row) - 1] = row[:-1]
        # position j predicts row[j + 1]; the answer starts at row[len(p)], predicted from j = len(p) - 1
        y[i, len(p) - 1:len(row) - 1] = row[len(p):]
    return x, y


def make_model(vocab_size, block_size, n_layer=2, n_head=4, n_embd=64, seed=0):
    """A small GPT without dropout (the tasks have unlimited fresh data, nothing to regularise)."""
    config = GPTConfig(vocab_size=vocab_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                       block_size=block_size, dropout=0.0)
    return GPT(config, generator=np.random.default_rng(seed))


def train(model, sample_batch, steps, *, lr=1e-3, weight_decay=0.1, warmup=100, clip=1.0, seed=0,
          log_every=0, log=print):
    """Minimise the answer-token cross-entropy for `steps` AdamW steps; returns a history dict.

    sample_batch(rng) -> (x, y) int arrays (B, T), e.g. pack(...) of fresh problems.
    The history holds the loss every step and the CPU seconds (process_time) spent.
    """
    if steps < 1:
        raise ValueError(f"train: steps must be >= 1, got {steps}")
    rng = np.random.default_rng(seed)
    opt = AdamW(param_groups_for_weight_decay(model.named_parameters(), weight_decay), lr=lr, betas=(0.9, 0.95))
    sched = WarmupCosine(opt, warmup_steps=min(warmup, steps // 2), max_steps=steps, min_lr_ratio=0.1)
    model.train()
    losses, cpu0 = [], time.process_time()
    for step in range(steps):
        x, y = sample_batch(rng)                                               # (B, T), (B, T)
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        losses.append(float(loss.item()))
        if log_every and (step % log_every == 0 or step == steps - 1):
            log(f"step {step:5d}  loss {losses[-1]:.4f}  cpu {time.process_time() - cpu0:6.1f}s")
    return {"loss": losses, "cpu_seconds": time.process_time() - cpu0}


@no_grad()
def greedy_answers(model, prompts, n_new, batch_size=500):
    """Greedy continuations (N, n_new) of equal-length prompts (N, T0), in batches."""
    prompts = np.asarray(prompts, dtype=np.int64)
    if prompts.ndim != 2:
        raise ValueError(f"greedy_answers: prompts must be (N, T) with equal lengths, got shape {prompts.shape}")
    out = []
    for i in range(0, len(prompts), batch_size):
        ids = generate(model, prompts[i:i + batch_size], n_new, greedy=True)   # (b, T0 + n_new)
        out.append(ids[:, prompts.shape[1]:])
    return np.concatenate(out, axis=0)

