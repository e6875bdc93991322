"""The Trainer, the CLI and generation on the Numba backend (the package default), kernels proven called.

The gradchecks of the numba CI tier run in float64, which never reaches a
kernel (kernels are float32 only). Here a few real training steps of a GPT and
a BERT, a CLI train + generate and a generation run with the Numba kernels,
and each test asserts that the fused kernels were actually called (a silent
fallback to the reference ops would otherwise pass) and that the results
match the NumPy backend.

Tolerances (float32): the kernels sum in another order than NumPy, so the
losses differ by rounding. Measured over seeds 3-5 (numba 0.68.1): at most
2.4e-7 (GPT) and 4.8e-7 (BERT) in the losses (~2-3 nats); asserted: 1e-4.
Greedy tokens are asserted equal across backends: the smallest gap between the
best and second-best logit in that generation is 0.041 (seed 3; 0.08 and 0.23
at seeds 4, 5), against logit differences of ~1e-6 between the backends.

Cost: ~3 s with Numba's on-disk cache warm; the first run on a fresh machine
also compiles the eight kernels (a few seconds more).
"""
import dataclasses
import io
import json

import numpy as np
import pytest

import minilm
from minilm import backend
from minilm.cli import main
from minilm.generate import generate
from minilm.pretrain import PretrainConfig, prepare

pytest.importorskip("numba")

TEXT = ("The quick brown fox jumps over the lazy dog. " * 3 + "A stitch in time saves nine.\n") * 40
KERNEL_NAMES = ("attention_forward", "attention_backward", "gelu_forward", "gelu_backward",
                "layer_norm_forward", "layer_norm_backward", "cross_entropy_forward", "cross_entropy_backward")


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return str(path)


class KernelCalls:
    """The kernel calls on the active backend, from minilm.backend's counters."""

    def reset(self):
        backend.reset_kernel_call_counts()

    def counts(self):
        return backend.kernel_call_counts()


def on_backend(name, fn):
    previous = minilm.get_backend()
    minilm.set_backend(name)
    try:
        if minilm.get_backend() != name:
            pytest.skip(f"the {name} backend is not available here")
        return fn()
    finally:
        minilm.set_backend(previous)


@pytest.fixture
def calls():
    return KernelCalls()


def gpt_config(corpus, out, **kw):
    base = dict(model="gpt", preset="nano", corpus=corpus, tokenizer="char", seq_len=16, batch_size=4,
                steps=5, lr=3e-3, warmup_steps=2, eval_interval=5, eval_batches=2, ckpt_interval=100,
                log_interval=100, seed=3, out_dir=str(out), n_layer=2, n_embd=24, n_head=2, dropout=0.0)
    base.update(kw)
    return PretrainConfig(**base)


def train(cfg):
    trainer, tok = prepare(cfg, progress_stream=io.StringIO())
    history = trainer.fit()
    return trainer, tok, history


def assert_close_histories(fast, slow, keys):
    for a, b in zip(fast, slow, strict=True):
        for k in keys:
            if k in b:
                assert a[k] == pytest.approx(b[k], abs=1e-4, rel=0), (k, a["step"])


def test_gpt_training_on_numba_calls_the_kernels_and_matches_numpy(corpus, tmp_path, calls):
    calls.reset()
    fast_trainer, tok, fast = on_backend("numba", lambda: train(gpt_config(corpus, tmp_path / "numba")))
    counts = calls.counts()
    for name in KERNEL_NAMES:
        assert counts.get(name, 0) >= 5, (name, counts)            # every step's forward and backward
    calls.reset()
    slow_trainer, _, slow = on_backend("numpy", lambda: train(gpt_config(corpus, tmp_path / "numpy")))
    assert calls.counts() == {}                                     # the reference backend calls none
    assert_close_histories(fast, slow, ("train_loss", "val_loss"))

    # generation with the trained model: the same greedy tokens on both backends, with and without cache
    model = fast_trainer.model
    prompt = np.array([tok.encode("The quick"), tok.encode("A stitch ")])
    calls.reset()
    outs = [on_backend("numba", lambda c=c: generate(model, prompt, 12, greedy=True, use_cache=c))
            for c in (True, False)]
    assert calls.counts().get("attention_forward", 0) > 0 and calls.counts().get("layer_norm_forward", 0) > 0
    want = on_backend("numpy", lambda: generate(model, prompt, 12, greedy=True, use_cache=False))
    for out in outs:
        np.testing.assert_array_equal(out, want)


def test_bert_training_on_numba_calls_the_kernels_and_matches_numpy(corpus, tmp_path, calls):
    def cfg(out):
        return dataclasses.replace(gpt_config(corpus, out, steps=4, eval_interval=4), model="bert",
                                   preset="bert-tiny", tokenizer="bpe", vocab_size=300, n_layer=1,
                                   n_embd=32, n_head=2, seq_len=32)
    calls.reset()
    _, _, fast = on_backend("numba", lambda: train(cfg(tmp_path / "numba")))
    counts = calls.counts()
    for name in ("attention_forward", "attention_backward", "gelu_forward", "gelu_backward",
                 "layer_norm_forward", "layer_norm_backward"):
        assert counts.get(name, 0) >= 4, (name, counts)
    _, _, slow = on_backend("numpy", lambda: train(cfg(tmp_path / "numpy")))
    assert_close_histories(fast, slow, ("train_loss", "val_loss", "mlm_acc"))


def test_cli_train_and_generate_on_numba(corpus, tmp_path, capsys, calls):
    run = tmp_path / "run"
    calls.reset()
    args = ["train", "--corpus", corpus, "--preset", "nano", "--seq-len", "16", "--steps", "4",
            "--n-layer", "1", "--n-embd", "24", "--n-head", "2", "--batch-size", "4", "--eval-batches", "2",
            "--eval-interval", "4", "--warmup-steps", "2", "--log-interval", "100", "--samples", "0",
            "--out", str(run), "--backend", "numba"]
    try:
        assert main(args) == 0
        assert minilm.get_backend() == "numba"
        trained = calls.counts()
        assert trained.get("attention_backward", 0) >= 4 and trained.get("cross_entropy_forward", 0) >= 4
        calls.reset()
        capsys.readouterr()
        assert main(["generate", str(run), "--prompt", "The ", "--max-new-tokens", "10", "--temperature", "0"]) == 0
        assert capsys.readouterr().out.startswith("The ")
        assert calls.counts().get("attention_forward", 0) >= 10      # one call per layer and token at least
    finally:
        minilm.set_backend("numpy")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["train_loss"]) for r in records)
