"""minilm.run_folder and the rules of a run folder: one atomic checkpoint, no mixing of runs,
--resume/--overwrite, the tokenizer fingerprint, torn metrics, and a fuzz of everything read back."""
import copy
import dataclasses
import io
import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from minilm.io import load_checkpoint, save_checkpoint
from minilm.io.atomic import atomic_folder, completed_folder, remove_stale_temps
from minilm.io.checkpoint import Checkpoint
from minilm.pretrain import PretrainConfig, load_pretrained, prepare, read_run_config
from minilm.run_folder import RunFolderError
from minilm.train import TrainingDiverged

TEXT = ("The quick brown fox jumps over the lazy dog. " * 3 + "A stitch in time saves nine.\n") * 40


def tiny(corpus, out, **kw):
    base = dict(model="gpt", preset="nano", corpus=str(corpus), tokenizer="char", seq_len=16, batch_size=4,
                steps=3, lr=3e-3, warmup_steps=2, eval_interval=3, eval_batches=2, ckpt_interval=3,
                log_interval=100, seed=3, out_dir=str(out), n_layer=2, n_embd=24, n_head=2, dropout=0.1)
    base.update(kw)
    return PretrainConfig(**base)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture
def run(corpus, tmp_path):
    """A finished 3-step run folder."""
    trainer, _ = prepare(tiny(corpus, tmp_path / "run"), progress_stream=io.StringIO())
    trainer.fit()
    return tmp_path / "run"


def rewrite_checkpoint(run, config=None, extra=None):
    """Replace the checkpoint's config and/or extra_state consistently (config.json and the embedded copy)."""
    ck = load_checkpoint(run / "checkpoint")
    save_checkpoint(run / "checkpoint", ck.tensors, ck.config if config is None else config,
                    ck.extra_state if extra is None else extra)


# ----- the checkpoint folder is replaced as a whole ----------------------------------------------
def write(folder, value):
    (folder / "v.txt").write_text(str(value))


def test_atomic_folder_replaces_whole_and_keeps_the_old_one_on_failure(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_folder(target) as tmp:
        write(tmp, 1)
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_folder(target) as tmp:
            write(tmp, 2)
            raise RuntimeError("disk on fire")
    assert (target / "v.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]          # no temp folder left


CRASH_STATES = ["new+path", "new+old", "path+old", "partial-old"]


def leave_crash_state(target, state):
    """Save version 1 into the folder `target`, then build the state a kill during saving version 2 leaves
    (see minilm.io.atomic's docstring); version 2 is the newest complete copy in every state."""
    new, old = target.with_name(target.name + ".new"), target.with_name(target.name + ".old")
    with atomic_folder(target) as tmp:
        write(tmp, 1)
    if state == "new+path":               # killed after the new copy was complete
        new.mkdir(); write(new, 2)
    elif state == "new+old":              # ... and after the old copy moved aside
        target.rename(old); new.mkdir(); write(new, 2)
    elif state == "path+old":             # ... and after the new copy moved in
        target.rename(old); target.mkdir(); write(target, 2)
    else:                                  # killed while deleting the old copy
        write(target, 2); old.mkdir()


@pytest.mark.parametrize("state", CRASH_STATES)
def test_every_state_a_crash_can_leave_reads_the_newest_and_the_next_save_finishes_it(tmp_path, state):
    target = tmp_path / "ckpt"
    leave_crash_state(target, state)
    expected = "2"
    assert (completed_folder(target) / "v.txt").read_text() == expected
    with atomic_folder(target) as tmp:
        write(tmp, 3)
    assert (target / "v.txt").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


@pytest.mark.parametrize("state", CRASH_STATES)
def test_taking_the_run_lock_finishes_a_swap_a_kill_left(tmp_path, state):
    """A resumed run already at its last step saves nothing: the lock itself must tidy the checkpoint."""
    from minilm.run_folder import run_lock
    target = tmp_path / "checkpoint"
    leave_crash_state(target, state)
    with run_lock(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint"]
        assert (target / "v.txt").read_text() == "2"


def test_load_checkpoint_reads_a_folder_caught_mid_swap(run):
    ckpt = run / "checkpoint"
    ckpt.rename(run / "checkpoint.new")                     # the state between two renames
    assert load_checkpoint(ckpt).extra_state["step"] == 3
    model, _, _ = load_pretrained(run)
    assert model is not None


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temps_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    pid = dead_pid()
    dead_file = tmp_path / f".metrics.jsonl.{pid}-0123456789ab.tmp"
    dead_dir = tmp_path / f".checkpoint.{pid}-0123456789ab.tmp"
    old_style = tmp_path / ".tokenizer.json.0123456789ab.tmp"          # minilm before pids were added
    mine = tmp_path / f".metrics.jsonl.{os.getpid()}-0123456789ab.tmp"
    unrelated = tmp_path / ".notes.tmp"
    for f in (dead_file, old_style, mine, unrelated):
        f.write_text("x")
    dead_dir.mkdir()
    (dead_dir / "model.safetensors").write_text("half")
    assert sorted(remove_stale_temps(tmp_path)) == sorted([dead_file.name, dead_dir.name, old_style.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, unrelated.name])


def test_a_save_clears_the_temps_that_killed_writers_left(run, corpus):
    pid = dead_pid()
    for k in range(12):                                    # what 12 kill -9s during saves would leave
        (run / f".checkpoint.{pid}-{k:012x}.tmp").mkdir()
    resumed, _ = prepare(tiny(corpus, run, steps=4), resume=True, progress_stream=io.StringIO())
    resumed.fit()
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []


# ----- a run folder is never mixed with another run ------------------------------------------------
def test_a_folder_another_live_process_trains_in_is_refused(run, corpus):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".minilm.lock").write_text(f"{other.pid}\n")
        for attempt in (dict(resume=True), dict(overwrite=True)):
            with pytest.raises(RunFolderError, match=rf"\.minilm\.lock: process {other.pid} is training in this run folder"):
                prepare(tiny(corpus, run, steps=4), progress_stream=io.StringIO(), **attempt)
    finally:
        other.kill()
        other.wait()
    (run / ".minilm.lock").write_text(f"{other.pid}\n")           # its holder is gone: taken over
    trainer, _ = prepare(tiny(corpus, run, steps=4), resume=True, progress_stream=io.StringIO())
    trainer.fit()
    assert trainer.step == 4 and not (run / ".minilm.lock").exists()


def test_a_new_run_refuses_a_used_folder_unless_overwrite(run, corpus, capsys):
    with pytest.raises(RunFolderError, match=r"run.*not empty \(checkpoint, loss.png|not empty.*--resume.*--overwrite"):
        prepare(tiny(corpus, run, seed=4), progress_stream=io.StringIO())
    before = load_checkpoint(run / "checkpoint").tensors
    assert (run / "metrics.jsonl").read_text().count("\n") == 3           # nothing was touched
    with pytest.raises(ValueError, match="give one of them"):
        prepare(tiny(corpus, run), resume=True, overwrite=True)
    trainer, _ = prepare(tiny(corpus, run, seed=4), overwrite=True, progress_stream=io.StringIO())
    assert not (run / "checkpoint").exists() and not (run / "metrics.jsonl").exists()
    trainer.fit()
    after = load_checkpoint(run / "checkpoint").tensors
    assert not np.array_equal(before["model.wte.weight"], after["model.wte.weight"])


def test_a_run_that_cannot_start_leaves_its_folder_empty(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("abcdefghij" * 2)
    with pytest.raises(ValueError, match="fewer than seq_len"):
        prepare(tiny(short, tmp_path / "run"), progress_stream=io.StringIO())
    assert not (tmp_path / "run").exists() or list((tmp_path / "run").iterdir()) == []


def test_resume_without_a_checkpoint_says_so(corpus, tmp_path):
    with pytest.raises(RunFolderError, match="no checkpoint to resume from"):
        prepare(tiny(corpus, tmp_path / "none"), resume=True)
    folder = tmp_path / "started"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}")                        # killed before the first checkpoint
    with pytest.raises(RunFolderError, match="before its first checkpoint.*--overwrite"):
        prepare(tiny(corpus, folder), resume=True)


def test_a_tokenizer_that_is_not_the_checkpoints_is_refused(run, corpus):
    tok = run / "tokenizer.json"
    data = json.loads(tok.read_text())
    tok.write_text(json.dumps(data, indent=1))                           # same content, other bytes
    with pytest.raises(RunFolderError, match=r"tokenizer.json: is not the tokenizer the checkpoint"):
        load_pretrained(run)
    with pytest.raises(RunFolderError, match=r"tokenizer.json: is not the tokenizer"):
        prepare(tiny(corpus, run), resume=True, progress_stream=io.StringIO())
    config = load_checkpoint(run / "checkpoint").config
    del config["tokenizer_sha256"]
    rewrite_checkpoint(run, config=config)
    with pytest.raises(RunFolderError, match=r"config.json: tokenizer_sha256 is missing"):
        load_pretrained(run)


def test_weights_that_do_not_fit_their_config_name_the_file_and_tensor(run, corpus):
    ck = load_checkpoint(run / "checkpoint")
    tensors = {**ck.tensors, "model.wte.weight": ck.tensors["model.wte.weight"][:5]}
    save_checkpoint(run / "checkpoint", tensors, ck.config, ck.extra_state)
    for attempt in (lambda: load_pretrained(run),
                    lambda: prepare(tiny(corpus, run, steps=4), resume=True, progress_stream=io.StringIO())):
        with pytest.raises(RunFolderError, match=r"model.safetensors: the weights do not fit .*wte.weight: "
                                                 r"checkpoint \(5, 24\) vs model"):
            attempt()


# ----- --resume: which settings may change ----------------------------------------------------------
def test_resume_refuses_contradicting_flags_naming_them_and_reports_allowed_changes(run, corpus):
    given = tiny(corpus, run, steps=5, n_embd=64, preset="mini", lr=5.0, eval_interval=2)
    with pytest.raises(RunFolderError) as err:
        prepare(given, resume=True, explicit={"steps", "n_embd", "preset", "lr", "eval_interval", "out_dir"})
    message = str(err.value)
    assert "\n" not in message and "config.json" in message
    for part in ("--lr 5.0 (checkpoint: 0.003)", "--n-embd 64 (checkpoint: 24)", "--preset 'mini' (checkpoint: 'nano')"):
        assert part in message
    assert "--steps" not in message.split("only")[0]                   # allowed changes are not refused
    stream = io.StringIO()
    trainer, _ = prepare(given, resume=True, explicit={"steps", "eval_interval", "out_dir"}, progress_stream=stream)
    assert "resume: eval_interval 3 -> 2, steps 3 -> 5" in stream.getvalue()
    assert trainer.config.steps == 5 and trainer.config.eval_interval == 2 and trainer.config.lr == 3e-3 and trainer.step == 3
    # without explicit, only --steps is taken (the API's old behaviour); everything else is the saved run's
    trainer, _ = prepare(given, resume=True, progress_stream=io.StringIO())
    assert trainer.config.steps == 5 and trainer.config.eval_interval == 3
    with pytest.raises(RunFolderError, match="checkpoint is at step 3, past steps=2"):
        prepare(tiny(corpus, run, steps=2), resume=True, progress_stream=io.StringIO())


# ----- metrics.jsonl ------------------------------------------------------------------------------
def test_a_torn_last_metrics_line_is_dropped_with_a_warning(run, corpus):
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join(lines) + '\n{"step": 4, "train_lo')
    with pytest.warns(UserWarning, match=r"metrics.jsonl: dropped a torn last line"):
        trainer, _ = prepare(tiny(corpus, run, steps=4), resume=True, progress_stream=io.StringIO())
    assert [r["step"] for r in trainer.history] == [1, 2, 3]
    assert metrics.read_text().splitlines() == lines
    metrics.write_text(lines[0] + "\n{oops\n" + lines[2] + "\n")
    with pytest.raises(RunFolderError, match=r"metrics.jsonl: line 2 is not a JSON record"):
        prepare(tiny(corpus, run, steps=4), resume=True, progress_stream=io.StringIO())


# ----- config.json ---------------------------------------------------------------------------------
@pytest.mark.parametrize("damage, match", [
    (lambda c: [1, 2], r"config.json must hold a JSON object, got list"),
    (lambda c: {**c, "pretrain": [1]}, r"config.json: pretrain is missing or not a JSON object"),
    (lambda c: {**c, "pretrain": {**c["pretrain"], "steps": "12"}}, r"config.json: pretrain.steps must be an integer >= 1, got .12."),
    (lambda c: {**c, "pretrain": {**c["pretrain"], "dropout": 1.0}}, r"config.json: pretrain.dropout must be a finite number >= 0 and < 1, got 1.0"),
    (lambda c: {**c, "pretrain": {**c["pretrain"], "lr": float("nan")}}, r"config.json: pretrain.lr must be a finite number > 0, got nan"),
    (lambda c: {**c, "pretrain": {**c["pretrain"], "model": "t5"}}, r"config.json: pretrain.model must be one of"),
    (lambda c: {**c, "pretrain": {k: v for k, v in c["pretrain"].items() if k != "seed"}}, r"config.json: pretrain has missing fields \['seed'\]"),
])
def test_a_damaged_config_is_a_one_line_error_naming_file_and_field(run, corpus, damage, match):
    config = load_checkpoint(run / "checkpoint").config
    bad = damage(config)
    if isinstance(bad, list):              # not expressible through save_checkpoint: write the file by hand
        (run / "checkpoint" / "config.json").write_text(json.dumps(bad))
    else:
        rewrite_checkpoint(run, config=bad)
    for attempt in (lambda: load_pretrained(run),
                    lambda: prepare(tiny(corpus, run), resume=True, progress_stream=io.StringIO())):
        with pytest.raises(ValueError, match=match) as err:
            attempt()
        assert "\n" not in str(err.value)


# ----- a fuzz of everything the Trainer reads back -------------------------------------------------
JUNK = [None, True, False, -1, 0, 1, 7, 2 ** 31, 2 ** 64, 2 ** 130, -2 ** 70, 0.5, 1.0, -0.0, 1e308,
        float("nan"), float("inf"), "", "x", "3", [], [1, 2], {}, {"a": 1}]


def paths(tree, prefix=()):
    """Every (path) to a value in a JSON tree."""
    found = [prefix]
    if isinstance(tree, dict):
        for k, v in tree.items():
            found += paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            found += paths(v, prefix + (i,))
    return found


def mutate(tree, rng):
    """A copy of the JSON tree with one random damage: delete, replace, nudge, or add a key."""
    tree = copy.deepcopy(tree)
    candidates = paths(tree)[1:]
    path = candidates[rng.integers(len(candidates))]
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    key, value = path[-1], parent[path[-1]]
    op = rng.integers(5)
    if op == 0:
        del parent[key]
    elif op == 1:
        parent[key] = JUNK[rng.integers(len(JUNK))]
    elif op == 2 and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[key] = value + [-1, 1, 2 ** 128, -(2 ** 128)][rng.integers(4)]
    elif op == 3 and isinstance(value, dict):
        value["unexpected"] = 1
    else:
        parent[key] = type(value)() if isinstance(value, (list, dict, str)) else str(value)
    return tree


def normal(tree):
    return json.loads(json.dumps(tree))


@pytest.fixture
def trained(run, corpus):
    """(trainer resumed from the run, its checkpoint in memory)."""
    trainer, _ = prepare(tiny(corpus, run, steps=10), resume=True, progress_stream=io.StringIO())
    return trainer, load_checkpoint(run / "checkpoint")


def fuzz_training_state(trainer, ckpt, cases, seed):
    rng = np.random.default_rng(seed)
    outcomes = {"refused": 0, "resumed": 0}
    for _ in range(cases):
        extra = mutate(ckpt.extra_state, rng)
        damaged = Checkpoint(tensors=ckpt.tensors, config=ckpt.config, extra_state=normal(extra), path=ckpt.path)
        try:
            trainer.load_training_state(damaged)
        except RunFolderError as err:
            assert "\n" not in str(err) and str(ckpt.path) in str(err)
            outcomes["refused"] += 1
            continue
        # Resumed: then exactly the stored state, nothing dropped or defaulted on the way.
        assert normal(trainer.training_state()[1]) == normal(extra), extra
        outcomes["resumed"] += 1
    return outcomes


def test_fuzz_of_the_checkpoint_training_state_resumes_exactly_or_names_the_field(trained):
    trainer, ckpt = trained
    outcomes = fuzz_training_state(trainer, ckpt, 2500, seed=20261203)
    assert outcomes["refused"] > 1500 and outcomes["resumed"] > 50     # both branches are exercised


@pytest.mark.slow
def test_fuzz_of_the_checkpoint_training_state_long(trained):
    trainer, ckpt = trained
    fuzz_training_state(trainer, ckpt, 30000, seed=7)


def test_specific_damage_in_the_training_state(trained):
    trainer, ckpt = trained

    def attempt(edit):
        extra = copy.deepcopy(ckpt.extra_state)
        edit(extra)
        trainer.load_training_state(Checkpoint(ckpt.tensors, ckpt.config, extra, path=ckpt.path))

    with pytest.raises(RunFolderError, match=r"optimizer.scalars\['3'\] is missing: a parameter with Adam moments"):
        attempt(lambda e: e["optimizer"]["scalars"].pop("3"))
    with pytest.raises(RunFolderError, match=r"step must be an integer in \[0, "):
        attempt(lambda e: e.update(step="3"))
    with pytest.raises(RunFolderError, match=r"optimizer.param_groups\[0\].weight_decay is 0.5, but this run"):
        attempt(lambda e: e["optimizer"]["param_groups"][0].update(weight_decay=0.5))
    with pytest.raises(RunFolderError, match=r"module_rngs must have the keys \['drop'\]"):
        attempt(lambda e: e["module_rngs"].clear())
    with pytest.raises(RunFolderError, match=r"batcher.rng.state.inc must be an integer in \[0, "):
        attempt(lambda e: e["batcher"]["rng"]["state"].update(inc=-1))
    with pytest.raises(RunFolderError, match=r"optimizer.scalars\['0'\].step must be an integer in \[1, 4\)"):
        attempt(lambda e: e["optimizer"]["scalars"]["0"].update(step=4))
    tensors = {k: v for k, v in ckpt.tensors.items() if k != "optim.5.exp_avg"}
    with pytest.raises(RunFolderError, match=r"optimizer.scalars\['5'\] has a step counter but its tensors are \['exp_avg_sq'\]"):
        trainer.load_training_state(Checkpoint(tensors, ckpt.config, ckpt.extra_state, path=ckpt.path))
    tensors = {**ckpt.tensors, "optim.5.exp_avg": np.zeros((2, 3), np.float32)}
    with pytest.raises(RunFolderError, match=r"model.safetensors: .*state 'exp_avg' of parameter 5 has shape \(2, 3\)"):
        trainer.load_training_state(Checkpoint(tensors, ckpt.config, ckpt.extra_state, path=ckpt.path))


def test_fuzz_of_a_bert_runs_training_state_and_a_resume_from_step_0(corpus, tmp_path):
    """The MLM batcher has more state (epoch, epoch order seed, position): the same fuzz on a BERT run."""
    cfg = tiny(corpus, tmp_path / "bert", model="bert", preset="bert-tiny", tokenizer="bpe", vocab_size=300,
               seq_len=32, n_embd=0, n_head=0)
    trainer, _ = prepare(cfg, progress_stream=io.StringIO())
    trainer.save_checkpoint()                                # step 0: before the first batch (epoch -1)
    at_zero, _ = prepare(dataclasses.replace(cfg, steps=2), resume=True, progress_stream=io.StringIO())
    assert at_zero.step == 0 and at_zero.train_batcher.state_dict()["epoch"] == -1
    at_zero.fit()
    resumed, _ = prepare(cfg, resume=True, progress_stream=io.StringIO())
    ckpt = load_checkpoint(tmp_path / "bert" / "checkpoint")
    assert ckpt.extra_state["batcher"]["epoch"] == 0
    outcomes = fuzz_training_state(resumed, ckpt, 800, seed=5)
    assert outcomes["refused"] > 400 and outcomes["resumed"] > 10


def fuzz_pretrain_config(run, config, cases, seed):
    rng = np.random.default_rng(seed)
    refused = 0
    for _ in range(cases):
        damaged = {"pretrain": mutate(config["pretrain"], rng)}
        try:
            cfg, _ = read_run_config(run / "checkpoint", {**config, **normal(damaged)})
        except RunFolderError as err:
            assert "\n" not in str(err) and "config.json" in str(err)
            refused += 1
            continue
        assert cfg.to_dict() == normal(damaged)["pretrain"]
        for name, value in cfg.to_dict().items():
            if isinstance(value, float):
                assert math.isfinite(value), name
    return refused


def test_fuzz_of_the_saved_pretrain_config(run):
    config = load_checkpoint(run / "checkpoint").config
    refused = fuzz_pretrain_config(run, config, 1500, seed=11)
    assert 500 < refused < 1500


# ----- a diverged run says where the NaN was born ----------------------------------------------------
def test_a_non_finite_loss_is_traced_to_the_op_and_the_last_checkpoint_stays(corpus, tmp_path):
    pytest.importorskip("minilm.autograd.anomaly")          # helper module; only its absence may skip
    trainer, _ = prepare(tiny(corpus, tmp_path / "run", steps=6, ckpt_interval=2), progress_stream=io.StringIO())
    real_next = trainer.train_batcher.next_batch

    def next_batch():                # before step 4, weights so large that a matmul overflows to inf
        if trainer.step == 3:
            trainer.model.lm_head.weight.data[...] = 1e38
        return real_next()

    trainer.train_batcher.next_batch = next_batch
    with pytest.raises(TrainingDiverged) as err, np.errstate(over="ignore", invalid="ignore"):
        trainer.fit()
    message = str(err.value)
    assert "at step 4" in message and "detect_anomaly:" in message and ".forward produced inf" in message
    assert all(p.grad is None for p in trainer.model.parameters())    # the replay updated nothing
    assert checkpoint_step_of(tmp_path / "run") == 2


def test_a_nan_from_outside_the_ops_is_said_to_be_so(corpus, tmp_path):
    pytest.importorskip("minilm.autograd.anomaly")
    trainer, _ = prepare(tiny(corpus, tmp_path / "run", steps=6), progress_stream=io.StringIO())
    real_loss = trainer.objective.loss

    def poisoned(model, batch):      # a NaN constant: no op turns finite values into NaN
        loss, n = real_loss(model, batch)
        return (loss * float("nan") if trainer.step == 2 else loss), n

    trainer.objective.loss = poisoned
    with pytest.raises(TrainingDiverged, match=r"at step 3.*no op turned finite values into NaN"):
        trainer.fit()


def checkpoint_step_of(run):
    return load_checkpoint(run / "checkpoint").extra_state["step"]


def test_ctrl_c_in_process_finishes_the_step_saves_and_says_so(corpus, tmp_path):
    """A real SIGINT halfway into step 3 (its batch drawn): step 3 is finished and logged, the
    checkpoint is at step 3, the user is told how to continue, and the old Ctrl-C handler is back."""
    trainer, _ = prepare(tiny(corpus, tmp_path / "run", steps=6, ckpt_interval=100), progress_stream=io.StringIO())
    real_next = trainer.train_batcher.next_batch

    def next_batch():
        batch = real_next()
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return batch

    trainer.train_batcher.next_batch = next_batch
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert signal.getsignal(signal.SIGINT) is before
    assert trainer.step == 3 and [r["step"] for r in trainer.history] == [1, 2, 3]
    assert checkpoint_step_of(tmp_path / "run") == 3
    shown = trainer.progress_stream.getvalue()
    assert "interrupted after step 3" in shown and "--resume" in shown


def test_the_nan_replay_leaves_the_random_states_where_the_failed_step_left_them(corpus, tmp_path):
    """The replay rewinds the random states to redo the step's dropout; afterwards they must be back
    where the failed step left them (its batch drawn), not at the start of the step."""
    trainer, _ = prepare(tiny(corpus, tmp_path / "run", steps=6), progress_stream=io.StringIO())
    real_next, after_draw = trainer.train_batcher.next_batch, {}

    def next_batch():
        if trainer.step == 3:
            trainer.model.lm_head.weight.data[...] = 1e38
        batch = real_next()
        after_draw.update(trainer.train_batcher.state_dict())
        return batch

    trainer.train_batcher.next_batch = next_batch
    with pytest.raises(TrainingDiverged, match="at step 4"), np.errstate(over="ignore", invalid="ignore"):
        trainer.fit()
    assert json.dumps(trainer.train_batcher.state_dict(), sort_keys=True) == json.dumps(after_draw, sort_keys=True)
