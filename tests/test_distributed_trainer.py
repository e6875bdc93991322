"""`mpirun -n 2 minilm train ...`: two ranks train what one process trains, and only rank 0 writes.

Each run is the real command in a subprocess (MPI cannot be started inside
the pytest process). Runs are tiny (nano GPT, bert-tiny, a few steps) with
dropout 0: with dropout the ranks draw their own masks and the runs agree
only in distribution. Gradient accumulation 2 and the default clipping
(global norm 1.0) are on in every run.

Tolerances: the two ranks add the same per-example gradient terms in another
order (two half-batch matmuls and an all-reduce instead of one matmul), so
the numbers differ by float32 rounding, about 1e-7 relative per step, which
AdamW's normalised updates pass on to the weights at about lr x 1e-6 per
step; after 12 steps at lr 1e-3 that is far below the 1e-5 used here.

The errors of a bad set-up that need no MPI (mpirun without mpi4py, --zero
alone) are tested here too, and run in the default suite.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minilm.io.checkpoint import load_checkpoint

import mpi_launch

MINILM = [sys.executable, "-c", "import sys; from minilm.cli import main; sys.exit(main())"]
ENV = mpi_launch.ENV
GPT = ["train", "--model", "gpt", "--preset", "nano", "--corpus", "pydoc", "--batch-size", "8", "--grad-accum", "2",
       "--dropout", "0", "--eval-interval", "6", "--samples", "0"]
BERT = ["train", "--model", "bert", "--preset", "bert-tiny", "--corpus", "pydoc", "--batch-size", "8",
        "--grad-accum", "2", "--dropout", "0", "--eval-interval", "4", "--samples", "0"]
LOSS_RTOL, WEIGHT_ATOL = 1e-5, 1e-5


@pytest.fixture(scope="module")
def mpi():
    mpi_launch.skip_unless_mpi()


def train(args, ranks=1, cwd=None, expect_ok=True):
    """Run `minilm train ...` alone (ranks=1) or under `mpirun -n ranks`; returns the CompletedProcess."""
    run = mpi_launch.launch(MINILM + list(args), ranks if ranks > 1 else None, timeout=180, cwd=cwd)
    if expect_ok:
        assert run.returncode == 0, f"exit status {run.returncode}:\n{run.stdout}\n{run.stderr}"
    return run


def metrics(folder):
    return [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]


def weights(folder):
    return {k: v for k, v in load_checkpoint(Path(folder) / "checkpoint").tensors.items() if k.startswith("model.")}


def assert_same_run(one, two, steps):
    a, b = metrics(one), metrics(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, steps + 1))
    for x, y in zip(a, b):
        assert abs(x["train_loss"] - y["train_loss"]) <= LOSS_RTOL * abs(x["train_loss"]), (x, y)
        assert ("val_loss" in x) == ("val_loss" in y)
        if "val_loss" in x:
            assert abs(x["val_loss"] - y["val_loss"]) <= LOSS_RTOL * abs(x["val_loss"]), (x, y)
    wa, wb = weights(one), weights(two)
    assert sorted(wa) == sorted(wb)
    worst = max(float(np.max(np.abs(wa[k] - wb[k]))) for k in wa)
    assert worst < WEIGHT_ATOL, f"weights differ by up to {worst:.2e}"
    return worst


@pytest.fixture(scope="module")
def gpt_runs(mpi, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_gpt")
    runs = {}
    for name, ranks in (("one", 1), ("two", 2)):
        runs[name] = train(GPT + ["--steps", "12", "--out", str(root / name)], ranks=ranks)
    return root, runs


def test_two_ranks_train_the_gpt_one_process_trains(gpt_runs):
    root, _ = gpt_runs
    assert_same_run(root / "one", root / "two", 12)


def test_only_rank_zero_writes_and_prints(gpt_runs):
    root, runs = gpt_runs
    assert sorted(p.name for p in (root / "two").iterdir()) == sorted(p.name for p in (root / "one").iterdir())
    assert len(metrics(root / "two")) == 12                      # one line per step, not one per rank
    out = runs["two"].stdout
    assert out.count("final: ") == 1 and out.count("run folder: ") == 1
    assert runs["two"].stderr.count("minilm train: gpt") == 1
    assert "2 ranks (MPI), each 4 of every 8 sequences" in runs["two"].stderr


def test_zero_stage_1_changes_nothing_but_where_the_moments_live(gpt_runs):
    """--zero: the same losses and the same checkpoint files (weights and AdamW moments), bit for bit."""
    root, _ = gpt_runs
    train(GPT + ["--steps", "12", "--zero", "--out", str(root / "zero")], ranks=2)
    assert [r["train_loss"] for r in metrics(root / "zero")] == [r["train_loss"] for r in metrics(root / "two")]
    plain, sharded = (load_checkpoint(root / name / "checkpoint").tensors for name in ("two", "zero"))
    assert sorted(plain) == sorted(sharded) and any(k.startswith("optim.") for k in plain)
    for name in plain:
        np.testing.assert_array_equal(plain[name], sharded[name], err_msg=name)


def test_two_ranks_train_the_bert_one_process_trains(mpi, tmp_path):
    # masked LM: the shards hold different numbers of masked tokens, so the ranks weigh their means
    for name, ranks in (("one", 1), ("two", 2)):
        train(BERT + ["--steps", "8", "--out", str(tmp_path / name)], ranks=ranks)
    assert_same_run(tmp_path / "one", tmp_path / "two", 8)


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_resume_with_a_different_number_of_ranks(mpi, tmp_path, first, then):
    """Train 6 steps on `first` ranks, resume to 12 on `then`: the same as one process doing both halves."""
    for folder, (a, b) in (("ref", (1, 1)), ("mixed", (first, then))):
        out = str(tmp_path / folder)
        train(GPT + ["--steps", "6", "--out", out], ranks=a)
        train(GPT + ["--steps", "12", "--out", out, "--resume"], ranks=b)
    assert_same_run(tmp_path / "ref", tmp_path / "mixed", 12)


def test_a_batch_the_ranks_cannot_share_is_refused_on_every_rank(mpi, tmp_path):
    run = train(GPT + ["--steps", "2", "--batch-size", "7", "--out", str(tmp_path / "odd")], ranks=2,
                expect_ok=False)
    assert run.returncode != 0
    assert run.stderr.count("the batch size 7 is not divisible by the 2 ranks") == 2, run.stderr
    assert "--batch-size 6" in run.stderr
    assert not (tmp_path / "odd" / "checkpoint").exists()


def test_a_failure_on_rank_zero_stops_every_rank_with_its_reason(mpi, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("not a run")
    run = train(GPT + ["--steps", "2", "--out", str(out)], ranks=2, expect_ok=False)
    assert run.returncode != 0
    assert "the run folder is not empty" in run.stderr                      # rank 0's own error
    assert "rank 1: stopped because rank 0 could not claim the run folder" in run.stderr, run.stderr


# ----- errors that need no MPI: part of the default suite ---------------------------------------------
def test_mpirun_without_mpi4py_is_a_clear_error(tmp_path):
    """What `mpirun -n 2 minilm train` does when mpi4py is missing: one clear error, not two lone runs."""
    shadow = tmp_path / "shadow" / "mpi4py"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named mpi4py (hidden by the test)')\n")
    env = dict(ENV, PMI_SIZE="2", PMI_RANK="0", PYTHONPATH=str(tmp_path / "shadow"))
    run = subprocess.run(MINILM + GPT + ["--steps", "2", "--out", str(tmp_path / "run")], capture_output=True,
                         text=True, timeout=120, env=env)
    assert run.returncode == 2, run.stderr
    assert "started by mpirun with 2 ranks" in run.stderr and 'pip install "minilm[mpi]"' in run.stderr
    assert not (tmp_path / "run").exists()


def test_zero_without_ranks_is_a_clear_error(tmp_path):
    env = {k: v for k, v in ENV.items() if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")}
    run = subprocess.run(MINILM + GPT + ["--steps", "2", "--zero", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 2
    assert "--zero shards the optimizer state over MPI ranks" in run.stderr


def test_launched_world_size_reads_the_launchers_environment(monkeypatch):
    from minilm.distributed.training import launched_world_size
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert launched_world_size() == 1
    monkeypatch.setenv("PMI_SIZE", "3")
    assert launched_world_size() == 3
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert launched_world_size() == 4

