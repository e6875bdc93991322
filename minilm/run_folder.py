"""The run folder `minilm train` writes, and every field read back from it checked.

    run/
      checkpoint/       model.safetensors + config.json: the newest complete checkpoint. It is
                        replaced as a whole (minilm.io.atomic.atomic_folder), so a crash at any
                        moment leaves the previous one or the new one, never a mix.
      tokenizer.json    written once, when the run starts; its sha256 is in every checkpoint's
                        config, so old weights never meet a new tokenizer.
      metrics.jsonl     one JSON line per step (a torn last line, from a kill, is dropped).
      loss.png
      .minilm.lock      the pid of the process training in the folder (one writer per run folder)

A checkpoint is read back by a program that trusts it: a step counter that is a
string, a deleted Adam step, an RNG state out of range would crash deep inside
the Trainer, or worse, resume silently from a state that never existed. So
every field is checked here (type, range, shape) before anything is loaded,
and a bad one raises RunFolderError: one line naming the file and the field.
"""
import hashlib
import json
import math
import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path

from minilm.io.atomic import _pid_alive, _temp_path, atomic_write_text, completed_folder, finish_folder_swap
from minilm.io.atomic import remove_stale_temps

CHECKPOINT_DIR = "checkpoint"
TOKENIZER_FILE = "tokenizer.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
LOCK_FILE = ".minilm.lock"
MINILM_FILES = (CHECKPOINT_DIR, CHECKPOINT_DIR + ".new", CHECKPOINT_DIR + ".old", TOKENIZER_FILE,
                METRICS_FILE, PLOT_FILE, LOCK_FILE)
_INT_LIMIT = 2 ** 63          # counters and sizes must fit an int64: larger ones come from damage


class RunFolderError(ValueError):
    """A run folder that cannot be used as it is; the message names the file and the field."""


def fail(file, field, problem):
    raise RunFolderError(f"{file}: {field} {problem}" if field else f"{file}: {problem}")


def load_weights(model, state, file):
    """model.load_state_dict(state); a checkpoint whose tensors do not fit its own config is a RunFolderError."""
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as err:
        fail(file, "", f"the weights do not fit the model its config.json describes: {err.args[0] if err.args else err}")


# ----- the folder as a whole ------------------------------------------------------------------
def find_checkpoint(run_dir):
    """The folder holding the run's newest complete checkpoint, or None."""
    folder = completed_folder(Path(run_dir) / CHECKPOINT_DIR)
    return folder if (folder / "model.safetensors").is_file() else None


def existing_entries(run_dir):
    """Names in the run folder, except temporary files and the lock of writers that are gone."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    check_not_in_use(run_dir)
    remove_stale_temps(run_dir)
    (run_dir / LOCK_FILE).unlink(missing_ok=True)
    return sorted(p.name for p in run_dir.iterdir())


def check_not_in_use(run_dir):
    """Refuse a run folder that another live process is training in (its pid is in .minilm.lock).

    Only where a pid can be checked (POSIX): elsewhere a lock left by a killed
    process could never be told from a live one, so the lock is not enforced.
    """
    if os.name != "posix":
        return
    lock = Path(run_dir) / LOCK_FILE
    try:
        pid = int(lock.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    if _pid_alive(pid) and pid != os.getpid():
        fail(lock, "", f"process {pid} is training in this run folder; wait for it to end or stop it first")


@contextmanager
def run_lock(run_dir):
    """Hold the run folder's lock (our pid in .minilm.lock) while training; a dead holder's lock is taken over."""
    lock = Path(run_dir) / LOCK_FILE
    check_not_in_use(run_dir)
    atomic_write_text(lock, f"{os.getpid()}\n")
    remove_stale_temps(run_dir)              # the folder is ours now: clear what killed writers left
    # ... and finish a checkpoint swap that a kill interrupted (a resumed run that is already at its last
    # step saves nothing, so otherwise a checkpoint.old could outlive the run)
    finish_folder_swap(Path(run_dir) / CHECKPOINT_DIR)
    try:
        yield
    finally:
        try:
            if lock.read_text().strip() == str(os.getpid()):
                lock.unlink()
        except FileNotFoundError:
            pass


def clear_run_folder(run_dir):
    """Delete minilm's files from a run folder (for --overwrite), the checkpoint first.

    The checkpoint copies go first, each by one rename to a temporary name: once
    they are gone nothing can load the old weights, whatever happens to the other
    files (and until then the old tokenizer.json is still there, and its
    fingerprint in the checkpoint refuses any other). Files minilm did not write
    are left alone.
    """
    run_dir = Path(run_dir)
    for name in MINILM_FILES:
        path = run_dir / name
        if path.is_dir():
            doomed = _temp_path(path)
            os.replace(path, doomed)
            shutil.rmtree(doomed)
        elif path.exists():
            path.unlink()


def tokenizer_sha256(path):
    """The fingerprint stored in checkpoints: sha256 of the tokenizer file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_tokenizer(config, tokenizer_path, config_file):
    """Refuse a tokenizer.json that is not the one the checkpoint was trained with."""
    saved = config.get("tokenizer_sha256")
    if not isinstance(saved, str) or len(saved) != 64:
        fail(config_file, "tokenizer_sha256", f"is missing or not a sha256 hex digest ({saved!r}); "
             "the checkpoint cannot be matched with its tokenizer")
    if not Path(tokenizer_path).is_file():
        fail(tokenizer_path, "", "is missing; the checkpoint needs the tokenizer it was trained with")
    if tokenizer_sha256(tokenizer_path) != saved:
        fail(tokenizer_path, "", f"is not the tokenizer the checkpoint in {Path(config_file).parent} was "
             "trained with (its sha256 differs from the checkpoint's tokenizer_sha256)")


# ----- metrics.jsonl ------------------------------------------------------------------------
def read_metrics(path, up_to_step):
    """The records of metrics.jsonl with step <= up_to_step.

    A kill while a line was appended leaves it torn: a torn *last* line is dropped
    with a warning; a bad line before it is damage, and an error.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            ok = isinstance(record, dict) and _is_int(record.get("step"))
        except json.JSONDecodeError:
            ok = False
        if not ok:
            if number == len(lines):
                warnings.warn(f"{path}: dropped a torn last line ({line[:40]!r}...)", stacklevel=2)
                break
            fail(path, f"line {number}", f"is not a JSON record with an integer 'step': {line[:60]!r}")
        if record["step"] <= up_to_step:
            records.append(record)
    return records


# ----- single values --------------------------------------------------------------------------
def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_int(file, field, v, low=0, high=_INT_LIMIT):
    if not _is_int(v) or not low <= v < high:
        fail(file, field, f"must be an integer in [{low}, {high}), got {v!r}")
    return v


def check_real(file, field, v, low=0.0, high=math.inf, high_open=False):
    inside = _is_real(v) and math.isfinite(v) and low <= v and (v < high if high_open else v <= high)
    if not inside:
        bracket = ")" if high_open else "]"
        fail(file, field, f"must be a finite number in [{low}, {high}{bracket}, got {v!r}")
    return v


def check_dict(file, field, v, keys=None):
    if not isinstance(v, dict):
        fail(file, field, f"must be a JSON object, got {type(v).__name__}")
    if keys is not None and set(v) != set(keys):
        missing, unknown = sorted(set(keys) - set(v)), sorted(set(v) - set(keys))
        fail(file, field, f"must have the keys {sorted(keys)} (missing {missing}, unknown {unknown})")
    return v


def check_rng_state(file, field, v, kind="PCG64"):
    """A bit generator state as numpy's `bit_generator.state` gives it (PCG64: two 128-bit ints)."""
    check_dict(file, field, v)
    if v.get("bit_generator") != kind:
        fail(file, f"{field}.bit_generator", f"must be {kind!r}, got {v.get('bit_generator')!r}")
    if kind != "PCG64":
        return v                                   # only PCG64 (numpy's default) is checked field by field
    check_dict(file, field, v, ("bit_generator", "state", "has_uint32", "uinteger"))
    check_dict(file, f"{field}.state", v["state"], ("state", "inc"))
    for key in ("state", "inc"):
        check_int(file, f"{field}.state.{key}", v["state"][key], 0, 2 ** 128)
    check_int(file, f"{field}.has_uint32", v["has_uint32"], 0, 2)
    check_int(file, f"{field}.uinteger", v["uinteger"], 0, 2 ** 32)
    return v


# ----- the checkpoint's training state (extra_state) ---------------------------------------------
def check_training_state(file, extra, *, optimizer, batcher_state, generators, optim_tensor_names):
    """Check a checkpoint's extra_state against the Trainer that will load it; raise RunFolderError.

    optimizer: the live optimizer (its groups give the expected parameters and hyper-parameters);
    batcher_state: the live batcher's state_dict() (the expected keys and sizes);
    generators: {module name: Generator} of the live model; optim_tensor_names: the
    checkpoint's "optim.<index>.<name>" tensor names.
    """
    check_dict(file, "extra_state", extra, ("step", "optimizer", "batcher", "default_rng", "module_rngs"))
    step = check_int(file, "step", extra["step"])
    _check_optimizer(file, extra["optimizer"], optimizer, step, optim_tensor_names)
    _check_batcher(file, extra["batcher"], batcher_state)
    check_rng_state(file, "default_rng", extra["default_rng"])
    rngs = check_dict(file, "module_rngs", extra["module_rngs"], generators)
    for name, gen in generators.items():
        check_rng_state(file, f"module_rngs[{name!r}]", rngs[name], type(gen.bit_generator).__name__)
    return step


def _check_optimizer(file, meta, optimizer, step, tensor_names):
    check_dict(file, "optimizer", meta, ("param_groups", "scalars"))
    groups = meta["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups):
        fail(file, "optimizer.param_groups", f"must be a list of {len(optimizer.param_groups)} groups, got {groups!r:.80}")
    live = optimizer.state_dict()["param_groups"]
    for gi, (saved, mine) in enumerate(zip(groups, live)):
        where = f"optimizer.param_groups[{gi}]"
        check_dict(file, where, saved, mine)
        if saved["params"] != mine["params"]:
            fail(file, f"{where}.params", f"must be {mine['params']}, got {saved['params']!r:.80}")
        check_real(file, f"{where}.lr", saved["lr"])        # set again from the schedule every step
        for key, value in mine.items():                       # fixed by the run's config: must match
            if key not in ("params", "lr") and saved[key] != value:
                fail(file, f"{where}.{key}", f"is {saved[key]!r}, but this run's optimizer has {value!r}")
    # Every parameter with moments has its own step counter (bias correction); Adam's state for
    # a parameter is all or nothing, so a lone counter or a lone moment is damage too.
    n_params = sum(len(g["params"]) for g in live)
    scalars = check_dict(file, "optimizer.scalars", meta["scalars"])
    with_moments = {}
    for name in tensor_names:
        _, index, kind = name.split(".", 2)
        with_moments.setdefault(index, set()).add(kind)
    for index in set(scalars) | set(with_moments):
        where = f"optimizer.scalars[{index!r}]"
        if not index.isdigit() or int(index) >= n_params or str(int(index)) != index:
            fail(file, where, f"names parameter {index!r}, but the optimizer has parameters 0..{n_params - 1}")
        if index not in scalars:
            fail(file, where, "is missing: a parameter with Adam moments needs its step counter")
        counters = check_dict(file, where, scalars[index], ("step",))
        check_int(file, f"{where}.step", counters["step"], 1, step + 1)
        if with_moments.get(index) != {"exp_avg", "exp_avg_sq"}:
            fail(file, where, f"has a step counter but its tensors are {sorted(with_moments.get(index, ()))}, "
                 "not ['exp_avg', 'exp_avg_sq']")


def _check_batcher(file, saved, mine):
    """Same keys as the live batcher's state; sizes equal to its own; counters in range."""
    check_dict(file, "batcher", saved, mine)
    for key, value in mine.items():
        where = f"batcher.{key}"
        if key == "rng":
            check_rng_state(file, where, saved[key], value.get("bit_generator"))
        elif key in ("seq_len", "batch_size", "num_tokens", "num_units"):
            if saved[key] != value or not _is_int(saved[key]):
                fail(file, where, f"is {saved[key]!r}, but this run's data gives {value!r}")
        elif key == "epoch":                                  # MLMBatcher: -1 before the first batch
            check_int(file, where, saved[key], -1)
        elif key == "epoch_seed":                             # ... and then no epoch order yet
            if (saved[key] is None) != (saved.get("epoch") == -1):
                fail(file, where, f"is {saved[key]!r}, which does not go with epoch {saved.get('epoch')!r}")
            if saved[key] is not None:
                check_int(file, where, saved[key])
        elif key == "position":
            check_int(file, where, saved[key], 0, mine.get("num_units", _INT_LIMIT - 1) + 1)
        elif _is_int(value):
            check_int(file, where, saved[key])
        elif type(saved[key]) is not type(value):
            fail(file, where, f"must be a {type(value).__name__}, got {saved[key]!r:.80}")
