"""The Trainer's optimizer step, recomputed independently in NumPy.

A few steps of a tiny GPT through `Trainer.fit`, against a float64 NumPy
AdamW written out here from the paper: gradient accumulation is the mean
over the micro-batches, clipping rescales to the global norm, the learning
rate follows warm-up + cosine with step 1 as the first step, decoupled weight
decay hits only the matrices of Conv1D/Linear layers (not LayerNorms, biases
or embeddings). The reference takes its gradients from its own copy of the
model, so only the autograd is shared with the code under test.

Tolerances: the Trainer updates float32 weights, the reference float64 ones
(its gradients are float32, computed at its own weights rounded to float32).
Measured differences after 4 steps: at most 1.6e-7 in the weights and 5e-7 in
the losses (numpy 2.4.6 with OpenBLAS, on the numpy and on the numba backend);
the asserts allow 2e-6 and 1e-5. Not bit-exact: another BLAS rounds the float32
gradients differently. Each mutation these tests are for (the loss not divided
by grad_accum, clipping skipped, step 1 run at the lr of step 0, weight decay on
every parameter, AdamW not given Trainer.betas) fails at least one of them.
"""
import io
import math
import time

import numpy as np
import pytest

from minilm.models import GPT, GPTConfig
from minilm.objectives import AutoregressiveLM
from minilm.optim import warmup_cosine
from minilm.train import TrainConfig, Trainer

V, T = 13, 6
CONFIG = GPTConfig.preset("nano", vocab_size=V, block_size=T, n_layer=1, n_embd=16, n_head=2)
LR, WARMUP, STEPS, MIN_RATIO, WD, BETAS = 1e-2, 2, 4, 0.1, 0.5, (0.8, 0.95)
# Adam divides by sqrt(v) + eps: a gradient that is 0 in exact arithmetic (the attention's key bias
# cannot change a softmax) is float32 noise of ~1e-10 that the default eps 1e-8 would blow up to a
# step of ~lr in a random direction. A larger eps, set on the Trainer's AdamW, damps that noise.
EPS = 1e-4


class FixedBatches:
    """The batcher interface the Trainer needs, over a fixed list of (x, y) batches."""

    def __init__(self, batches):
        self.batches, self.position = batches, 0

    def next_batch(self):
        batch = self.batches[self.position % len(self.batches)]
        self.position += 1
        return batch

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]


def make_batches(n, seed=5):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.integers(0, V, (3, T))
        out.append((x, rng.integers(0, V, (3, T))))
    return out


def new_model():
    return GPT(CONFIG, generator=np.random.default_rng(11))


def reference_lr(step):
    """Warm-up from 0 to LR over WARMUP steps, then a half cosine to LR * MIN_RATIO at STEPS."""
    if step < WARMUP:
        return LR * step / WARMUP
    progress = (step - WARMUP) / (STEPS - WARMUP)
    return LR * MIN_RATIO + 0.5 * (LR - LR * MIN_RATIO) * (1 + math.cos(math.pi * progress))


def decayed_names(model):
    """Names of the parameters that get weight decay: the matrices of Conv1D / Linear layers,
    unless that matrix is the (tied) token embedding."""
    wte = model.wte.weight
    names = set()
    for mod_name, module in model.named_modules():
        if type(module).__name__ in ("Conv1D", "Linear") and module.weight is not wte:
            names.add(f"{mod_name}.weight")
    return names


def unique_params(model):
    seen, out = set(), {}
    for name, p in model.named_parameters():
        if id(p) not in seen:
            seen.add(id(p))
            out[name] = p
    return out


def reference_run(batches, grad_accum, grad_clip):
    """(weights after each step, mean loss of each step, global grad norm before clipping)."""
    model = new_model()
    params = unique_params(model)
    decay = decayed_names(model)
    w = {n: p.data.astype(np.float64) for n, p in params.items()}
    m = {n: np.zeros_like(v) for n, v in w.items()}
    v2 = {n: np.zeros_like(v) for n, v in w.items()}
    weights, step_losses, norms = [], [], []
    b1, b2 = BETAS
    for t in range(1, STEPS + 1):
        for n, p in params.items():
            p.data[...] = w[n].astype(np.float32)
        grads = {n: np.zeros_like(v) for n, v in w.items()}
        losses = []
        for k in range(grad_accum):
            x, y = batches[(t - 1) * grad_accum + k]
            for p in params.values():
                p.grad = None
            _, loss = model(x, targets=y)
            loss.backward()
            losses.append(float(loss.item()))
            for n, p in params.items():
                grads[n] += p.grad.astype(np.float64) / grad_accum          # the mean, not the sum
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
        if grad_clip and norm > grad_clip:
            grads = {n: g * grad_clip / norm for n, g in grads.items()}
        lr = reference_lr(t)
        for n in w:
            if n in decay:
                w[n] = w[n] * (1 - lr * WD)
            m[n] = b1 * m[n] + (1 - b1) * grads[n]
            v2[n] = b2 * v2[n] + (1 - b2) * grads[n] ** 2
            m_hat, v_hat = m[n] / (1 - b1 ** t), v2[n] / (1 - b2 ** t)
            w[n] = w[n] - lr * m_hat / (np.sqrt(v_hat) + EPS)
        weights.append({n: a.copy() for n, a in w.items()})
        step_losses.append(float(np.mean(losses)))
        norms.append(norm)
    return weights, step_losses, norms


def trainer_run(tmp_path, batches, grad_accum, grad_clip):
    """Run Trainer.fit for STEPS steps; return (trainer, weights after each step, grads given to AdamW)."""
    model = new_model()
    val = batches[:1]
    config = TrainConfig(steps=STEPS, lr=LR, warmup_steps=WARMUP, min_lr_ratio=MIN_RATIO, weight_decay=WD,
                         grad_clip=grad_clip, grad_accum=grad_accum, eval_interval=100, ckpt_interval=100,
                         log_interval=100, out_dir=tmp_path)
    trainer = Trainer(model, AutoregressiveLM(), FixedBatches(batches), lambda: iter(val), config,
                      progress_stream=io.StringIO())
    for group in trainer.optimizer.param_groups:
        group["eps"], group["betas"] = EPS, BETAS
    params = unique_params(model)
    weights, grads_seen = [], []
    real_step = trainer.optimizer.step

    def recording_step():
        grads_seen.append({n: p.grad.astype(np.float64).copy() for n, p in params.items()})
        real_step()
        weights.append({n: p.data.astype(np.float64).copy() for n, p in params.items()})

    trainer.optimizer.step = recording_step
    trainer.fit()
    return trainer, weights, grads_seen


def assert_weights_close(got, want, step):
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=2e-6,
                                   err_msg=f"{name} after step {step}")


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_steps_equal_an_independent_adamw_without_clipping(tmp_path, grad_accum):
    batches = make_batches(STEPS * grad_accum)
    trainer, weights, grads = trainer_run(tmp_path, batches, grad_accum, grad_clip=0.0)
    ref_weights, ref_losses, ref_norms = reference_run(batches, grad_accum, grad_clip=0.0)
    assert len(weights) == STEPS
    for t in range(STEPS):
        # the gradient AdamW sees is the MEAN over the micro-batches (its norm says so first)
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads[t].values()))
        assert norm == pytest.approx(ref_norms[t], rel=1e-5), f"step {t + 1}: gradient norm"
        assert_weights_close(weights[t], ref_weights[t], t + 1)
    # the metrics: the mean micro-batch loss before the update, and the lr the step used
    np.testing.assert_allclose([r["train_loss"] for r in trainer.history], ref_losses, rtol=0, atol=1e-5)
    np.testing.assert_allclose([r["lr"] for r in trainer.history], [reference_lr(t) for t in range(1, STEPS + 1)],
                               rtol=1e-12)
    assert trainer.history[0]["lr"] == pytest.approx(LR / 2)        # step 1 of a 2-step warm-up: not 0


@pytest.mark.parametrize("steps, warmup", [(1, 0), (3, 5), (6, 2), (6, 0)])
def test_each_step_runs_at_the_warmup_cosine_rate_to_the_last_bit(tmp_path, steps, warmup):
    """Step k updates at warmup_cosine(k) exactly, in every group (the warm-up capped at steps - 1)."""
    config = TrainConfig(steps=steps, warmup_steps=warmup, lr=3e-3, min_lr_ratio=0.1, out_dir=tmp_path)
    trainer = Trainer(new_model(), AutoregressiveLM(), FixedBatches(make_batches(steps)), lambda: iter([]), config)
    rates, real_step = [], trainer.optimizer.step
    trainer.optimizer.step = lambda: (rates.append({g["lr"] for g in trainer.optimizer.param_groups}), real_step())
    for _ in range(steps):
        trainer.train_step()
    assert rates == [{warmup_cosine(k, base_lr=3e-3, warmup_steps=min(warmup, steps - 1), max_steps=steps,
                                    min_lr=3e-3 * 0.1)} for k in range(1, steps + 1)]


def test_clipping_rescales_to_the_global_norm(tmp_path):
    batches = make_batches(STEPS * 2, seed=8)
    _, _, ref_norms = reference_run(batches, 2, grad_clip=0.0)
    clip = 0.5 * min(ref_norms[:2])           # clips the first steps (at least; later ones may too)
    trainer, weights, grads = trainer_run(tmp_path, batches, 2, grad_clip=clip)
    ref_weights, _, ref_clip_norms = reference_run(batches, 2, grad_clip=clip)
    for t in range(STEPS):
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads[t].values()))
        want = min(ref_clip_norms[t], clip)
        assert norm == pytest.approx(want, rel=1e-5), f"step {t + 1}: norm after clipping"
        assert_weights_close(weights[t], ref_weights[t], t + 1)


def test_weight_decay_only_on_the_decay_group(tmp_path):
    """With a zero learning signal (grads of 0 would be skipped, so: lr tiny vs wd), check groups directly."""
    model = new_model()
    trainer = Trainer(model, AutoregressiveLM(), FixedBatches(make_batches(1)), lambda: iter([]),
                      TrainConfig(steps=2, weight_decay=0.3, out_dir=tmp_path))
    decay = decayed_names(model)
    params = unique_params(model)
    by_id = {id(p): n for n, p in params.items()}
    groups = {}
    for group in trainer.optimizer.param_groups:
        for p in group["params"]:
            groups[by_id[id(p)]] = group["weight_decay"]
    assert set(groups) == set(params)                                 # every parameter, once
    assert {n for n, wd in groups.items() if wd == 0.3} == decay
    assert {n for n, wd in groups.items() if wd == 0.0} == set(params) - decay
    assert all(tuple(g["betas"]) == Trainer.betas for g in trainer.optimizer.param_groups)


class SpyObjective(AutoregressiveLM):
    """Records the model's mode at each call, and how many batches each evaluation saw."""

    def __init__(self):
        self.modes = {"loss": set(), "evaluate": set()}
        self.evaluated_batches = []

    def loss(self, model, batch):
        self.modes["loss"].add(model.training)
        return super().loss(model, batch)

    def evaluate(self, model, batches):
        self.modes["evaluate"].add(model.training)
        batches = list(batches)
        self.evaluated_batches.append(len(batches))
        return super().evaluate(model, batches)


def test_modes_eval_cadence_callbacks_and_throughput(tmp_path):
    """Training runs in train mode (dropout on), evaluation in eval mode; evaluations fall on
    multiples of eval_interval and on the last step; on_eval sees each; tokens/s is plausible."""
    objective, seen = SpyObjective(), []
    batches = make_batches(4)
    model = new_model()
    model.eval()                                               # the Trainer must switch it itself
    progress = io.StringIO()
    config = TrainConfig(steps=7, warmup_steps=1, eval_interval=3, ckpt_interval=100, log_interval=100,
                         out_dir=tmp_path)
    trainer = Trainer(model, objective, FixedBatches(batches), lambda: iter(batches[:2]), config,
                      on_eval=lambda tr, bar: seen.append(tr.step), progress_stream=progress)
    start = time.perf_counter()
    history = trainer.fit()
    wall = time.perf_counter() - start
    assert objective.modes == {"loss": {True}, "evaluate": {False}}
    assert model.training                                      # left in train mode after an evaluation
    assert [r["step"] for r in history] == list(range(1, 8))
    assert [r["step"] for r in history if "val_loss" in r] == [3, 6, 7] == seen
    assert objective.evaluated_batches == [2, 2, 2]
    for r in history:                                          # each evaluation is printed with its step
        if "val_loss" in r:
            assert f"step {r['step']}: val_loss {r['val_loss']:.4f}" in progress.getvalue()
    # each step's window took at most the whole fit, so tokens/s is at least one step's tokens / wall time
    tokens_per_step = batches[0][1].size
    assert all(tokens_per_step / wall <= r["tokens_per_sec"] for r in history)


def test_bad_step_counts_are_refused_and_a_step_counts_its_tokens(tmp_path):
    batches = make_batches(4)
    make = lambda **kw: Trainer(new_model(), AutoregressiveLM(), FixedBatches(batches), lambda: iter(batches),
                                TrainConfig(out_dir=tmp_path, **kw), progress_stream=io.StringIO())
    for bad in (dict(steps=0), dict(steps=3, grad_accum=0)):
        with pytest.raises(ValueError, match="must be >= 1"):
            make(**bad)
    trainer = make(steps=3, grad_accum=2)
    loss, tokens = trainer.train_step()
    assert tokens == 2 * batches[0][1].size and trainer.step == 1          # both micro-batches' targets
