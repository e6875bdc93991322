"""Ctrl-C (a real SIGINT to a real training process) at any moment, then --resume in a new process:
the per-step losses, learning rates and validation metrics equal an uninterrupted run's exactly.

The same machine and the same process settings run both, so bit-for-bit equality is the right claim.
"""
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from minilm.pretrain import PretrainConfig, prepare

TEXT = ("The quick brown fox jumps over the lazy dog. " * 3 + "A stitch in time saves nine.\n") * 40

# The training process. It can also send itself a real SIGINT at a chosen point (inside the
# k-th batch draw, evaluation or checkpoint save, once or twice), so that the moments a timer
# rarely hits are tested every time.
CHILD = r'''
import io, json, os, signal, sys
import minilm
minilm.set_backend("numpy")
import minilm.train
from minilm.pretrain import PretrainConfig, prepare

args = json.loads(sys.argv[1])
trainer, _ = prepare(PretrainConfig(**args["cfg"]), resume=args["resume"], progress_stream=io.StringIO())
where, at, times = args["self_interrupt"] or (None, 0, 0)
calls = {"next_batch": 0, "evaluate": 0, "save": 0}

def hook(name):
    calls[name] += 1
    if name == where and calls[name] == at:
        for _ in range(times):
            os.kill(os.getpid(), signal.SIGINT)

real_next, real_eval, real_save = trainer.train_batcher.next_batch, trainer.objective.evaluate, minilm.train.save_checkpoint

def next_batch():
    if calls["next_batch"] == 0:
        print("training", flush=True)          # fit() has started: its Ctrl-C handler is in place
    batch = real_next()
    hook("next_batch")                           # the batch is drawn: the step is half done
    return batch

def evaluate(model, batches):
    metrics = real_eval(model, batches)
    hook("evaluate")
    return metrics

def save(*a, **k):                               # called inside the checkpoint's temporary folder
    hook("save")
    return real_save(*a, **k)

trainer.train_batcher.next_batch, trainer.objective.evaluate, minilm.train.save_checkpoint = next_batch, evaluate, save
try:
    trainer.fit()
except KeyboardInterrupt:
    sys.exit(130)
'''

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "NUMBA_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def config(corpus, out):
    return dict(model="gpt", preset="nano", corpus=str(corpus), tokenizer="char", seq_len=16, batch_size=4,
                steps=24, lr=3e-3, warmup_steps=2, eval_interval=3, eval_batches=2, ckpt_interval=4,
                log_interval=100, seed=3, out_dir=str(out), n_layer=2, n_embd=24, n_head=2, dropout=0.1,
                grad_accum=2)


def start(cfg, resume=False, self_interrupt=None):
    args = json.dumps({"cfg": cfg, "resume": resume, "self_interrupt": self_interrupt})
    return subprocess.Popen([sys.executable, "-c", CHILD, args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc, expected_rc=(0,)):
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in expected_rc, f"rc {proc.returncode}\n{out}\n{err}"
    return err


def records(run):
    """Per step: everything but the wall-clock speed."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_sec"} for line in lines]


TRAINING_SECONDS = []     # measured by the reference run: timed Ctrl-Cs land inside fit() on any machine


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interrupt")
    (folder / "corpus.txt").write_text(TEXT)
    proc = start(config(folder / "corpus.txt", folder / "reference"))
    assert proc.stdout.readline() == "training\n"
    began = time.perf_counter()
    finish(proc)
    TRAINING_SECONDS.append(time.perf_counter() - began)      # how long fit() runs, for the timed tests
    ref = records(folder / "reference")
    assert [r["step"] for r in ref] == list(range(1, 25)) and "val_loss" in ref[2]
    return folder, ref


def interrupt_and_resume(reference, name, self_interrupt=None, delay=None):
    folder, ref = reference
    cfg = config(folder / "corpus.txt", folder / name)
    proc = start(cfg, self_interrupt=self_interrupt)
    if delay is not None:
        assert proc.stdout.readline() == "training\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
    # A timed Ctrl-C can also land after fit() returned and restored Python's own handler: the
    # process then dies of the signal (rc -2) with its run complete, which the check below requires.
    err = finish(proc, expected_rc=(130,) if delay is None else (0, 130, -signal.SIGINT))
    interrupted = proc.returncode == 130
    if interrupted:
        assert "Traceback" not in err, err
        finish(start(cfg, resume=True))
    assert records(folder / name) == ref
    return interrupted


@pytest.mark.parametrize("where, at, times", [
    ("next_batch", 9, 1),     # during a step (micro-batch 1 of 2): it is finished, then saved
    ("next_batch", 14, 2),    # twice during a step (micro-batch 2): stop at once, the step is undone, saved
    ("evaluate", 2, 1),       # during an evaluation: its metrics line is still written
    ("save", 2, 1),           # during a periodic save
    ("save", 3, 2),           # twice during a save: it is abandoned, the previous checkpoint is kept
])
def test_sigint_at_a_chosen_moment_then_resume_is_exact(reference, where, at, times):
    assert interrupt_and_resume(reference, f"{where}-{at}-{times}", self_interrupt=[where, at, times])


def test_sigint_at_random_moments_then_resume_is_exact(reference):
    rng = np.random.default_rng(8)
    delays = rng.uniform(0.0, 0.5, size=2) * TRAINING_SECONDS[-1]
    interrupted = [interrupt_and_resume(reference, f"timer-{k}", delay=d) for k, d in enumerate(delays)]
    assert any(interrupted)


@pytest.mark.slow
def test_sigint_at_many_random_moments_then_resume_is_exact(reference):
    rng = np.random.default_rng(9)
    interrupted = [interrupt_and_resume(reference, f"slow-timer-{k}", delay=d)
                   for k, d in enumerate(rng.uniform(0.0, 0.8, size=20) * TRAINING_SECONDS[-1])]
    assert sum(interrupted) >= 10
    for k, (where, at) in enumerate([("evaluate", 1), ("evaluate", 4), ("save", 1), ("save", 4), ("next_batch", 2)]):
        assert interrupt_and_resume(reference, f"slow-self-{k}", self_interrupt=[where, at, 1 + k % 2])


def test_fit_restores_the_previous_ctrl_c_handler_and_runs_outside_the_main_thread(tmp_path):
    (tmp_path / "corpus.txt").write_text(TEXT)
    before = signal.getsignal(signal.SIGINT)
    cfg = PretrainConfig(**{**config(tmp_path / "corpus.txt", tmp_path / "main"), "steps": 2})
    trainer, _ = prepare(cfg, progress_stream=io.StringIO())
    trainer.fit()
    assert signal.getsignal(signal.SIGINT) is before
    results = []
    cfg = PretrainConfig(**{**config(tmp_path / "corpus.txt", tmp_path / "thread"), "steps": 2})
    worker = threading.Thread(target=lambda: results.append(prepare(cfg, progress_stream=io.StringIO())[0].fit()))
    worker.start()
    worker.join()
    assert len(results) == 1 and [r["step"] for r in results[0]] == [1, 2]
    assert signal.getsignal(signal.SIGINT) is before
