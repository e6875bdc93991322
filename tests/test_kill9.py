"""kill -9 at any moment, over and over: the run folder always loads, resumes, and its step never goes
backwards; after all the kills the finished run equals one that was never killed, step for step.

Half of the kills come from a timer (anywhere: start-up, tokenizer, training, metrics, saves); the
other half the process sends itself just before or just after its k-th os.replace, which puts
them inside the tokenizer write, the metrics rewrite of a resume, and every rename of a save.
"""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minilm.io import load_checkpoint
from minilm.pretrain import PretrainConfig, load_pretrained, prepare
from minilm.run_folder import RunFolderError, find_checkpoint

TEXT = ("The quick brown fox jumps over the lazy dog. " * 3 + "A stitch in time saves nine.\n") * 40

CHILD = r'''
import io, json, os, signal, sys
import minilm
minilm.set_backend("numpy")
args = json.loads(sys.argv[1])
if args["kill_at"]:
    k, when = args["kill_at"]
    real_replace, count = os.replace, [0]
    def replace(src, dst):
        count[0] += 1
        if count[0] == k and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
        if count[0] == k and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
from minilm.pretrain import PretrainConfig, prepare
trainer, _ = prepare(PretrainConfig(**args["cfg"]), resume=args["resume"], overwrite=args["overwrite"],
                     progress_stream=io.StringIO())
trainer.fit()
'''

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "NUMBA_NUM_THREADS": "1"}


def config(corpus, out, **kw):
    base = dict(model="gpt", preset="nano", corpus=str(corpus), tokenizer="char", seq_len=16, batch_size=4,
                steps=60, lr=3e-3, warmup_steps=2, eval_interval=5, eval_batches=2, ckpt_interval=1,
                log_interval=100, seed=3, out_dir=str(out), n_layer=2, n_embd=24, n_head=2, dropout=0.1)
    base.update(kw)
    return base


def start(cfg, resume=False, overwrite=False, kill_at=None):
    args = json.dumps({"cfg": cfg, "resume": resume, "overwrite": overwrite, "kill_at": kill_at})
    return subprocess.Popen([sys.executable, "-c", CHILD, args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait(proc):
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, -signal.SIGKILL), f"rc {proc.returncode}\n{err}"
    return proc.returncode


def records(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_sec"} for line in lines]


def checkpoint_step(run):
    folder = find_checkpoint(run)
    return None if folder is None else load_checkpoint(folder).extra_state["step"]


def check_after_kill(run, cfg, last_step):
    """The folder loads and its step did not go backwards; returns the step (None: no checkpoint yet)."""
    step = checkpoint_step(run)
    if step is None:
        assert last_step is None, "a checkpoint disappeared"
        if run.exists() and any(run.iterdir()):
            with pytest.raises(RunFolderError, match="no checkpoint to resume from"):
                prepare(PretrainConfig(**cfg), resume=True)
        return None
    assert last_step is None or step >= last_step, f"the step went back from {last_step} to {step}"
    model, tokenizer, config = load_pretrained(run)
    assert config["pretrain"]["seed"] == cfg["seed"] and tokenizer.vocab_size > 0
    return step


def kill_many_times(tmp_path, kills, steps, seed):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    reference = config(corpus, tmp_path / "reference", steps=steps, ckpt_interval=1000)
    assert wait(start(reference)) == 0
    run = tmp_path / "run"
    cfg = config(corpus, run, steps=steps)
    rng = np.random.default_rng(seed)
    last_step, killed_in_save = None, 0
    for k in range(kills):
        resume = last_step is not None
        overwrite = not resume and run.exists() and any(run.iterdir())
        if k % 2 == 0:
            proc = start(cfg, resume, overwrite)
            time.sleep(rng.uniform(0.05, 0.9))
            proc.send_signal(signal.SIGKILL)
        else:
            kill_at = [int(rng.integers(1, 16)), ["before", "after"][int(rng.integers(2))]]
            proc = start(cfg, resume, overwrite, kill_at=kill_at)
            killed_in_save += kill_at[0] >= 2
        wait(proc)
        last_step = check_after_kill(run, cfg, last_step)
    assert wait(start(cfg, resume=last_step is not None, overwrite=last_step is None)) == 0
    assert records(run) == records(tmp_path / "reference")
    assert [p.name for p in run.iterdir() if p.name.endswith((".tmp", ".new", ".old"))] == []
    return killed_in_save


def test_kill9_at_random_moments_never_breaks_the_run(tmp_path):
    assert kill_many_times(tmp_path, kills=14, steps=60, seed=90) >= 4


@pytest.mark.slow
def test_kill9_sixty_times(tmp_path):
    assert kill_many_times(tmp_path, kills=60, steps=150, seed=91) >= 20


def test_kill9_inside_every_write_of_a_resume_with_more_steps(tmp_path):
    """The first save after `--resume --steps N` changes config.json: a kill at each rename of it."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    pristine = tmp_path / "pristine"
    assert wait(start(config(corpus, pristine, steps=8))) == 0
    for k in range(1, 7):     # 1: metrics.jsonl rewrite, 2-3: files in the temp folder, 4-6: the folder swap
        for when in ("before", "after"):
            run = tmp_path / f"run-{k}-{when}"
            shutil.copytree(pristine, run)
            cfg = config(corpus, run, steps=12)
            assert wait(start(cfg, resume=True, kill_at=[k, when])) == -signal.SIGKILL
            step = check_after_kill(run, cfg, 8)
            config_steps = load_checkpoint(find_checkpoint(run)).config["pretrain"]["steps"]
            assert (step, config_steps) in ((8, 8), (9, 12))            # one save or the other, never a mix
            trainer, _ = prepare(PretrainConfig(**cfg), resume=True, progress_stream=io.StringIO())
            trainer.fit()                                                # resumes (here, in this process)
            assert checkpoint_step(run) == 12


def test_kill9_inside_the_tokenizer_write_of_a_fresh_run(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    for when in ("before", "after"):
        run = tmp_path / f"run-{when}"
        cfg = config(corpus, run, steps=3)
        assert wait(start(cfg, kill_at=[1, when])) == -signal.SIGKILL     # rename 1: tokenizer.json
        assert check_after_kill(run, cfg, None) is None
        if when == "after":                    # tokenizer.json is there: a new start must say --overwrite
            with pytest.raises(RunFolderError, match="not empty.*--overwrite"):
                prepare(PretrainConfig(**cfg))
        else:                                  # only the dead writer's temp file, which does not count
            assert [p.name for p in run.iterdir()] == [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
        assert wait(start(cfg, overwrite=when == "after")) == 0
        assert checkpoint_step(run) == 3
