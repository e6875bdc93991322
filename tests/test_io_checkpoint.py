"""minilm.io.checkpoint and minilm.io.atomic: round trips, resumable RNG state, crash safety, torn folders."""

import json
import os
import threading

import numpy as np
import pytest

import minilm.io.safetensors as st
from minilm.io.atomic import atomic_write_bytes, atomic_writer
from minilm.io.atomic import atomic_folder
from minilm.io.checkpoint import add_prefix, load_checkpoint, save_checkpoint, take_prefix


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_bytes_replaces_and_keeps_usual_permissions(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    assert (target.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)
    assert leftovers(tmp_path) == []


def test_crash_inside_atomic_writer_leaves_previous_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_writer(target) as f:
            f.write(b"half of the new ")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


def test_atomic_writer_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_bytes(tmp_path / "nope" / "f.bin", b"x")


def make_state(seed=0):
    rng = np.random.default_rng(seed)
    tensors = {
        "wte.weight": rng.standard_normal((10, 4)).astype(np.float32),
        "pos": np.arange(6, dtype=np.int64),
        "flag": np.array(True),
        "empty": np.zeros((0, 3), np.float16),
    }
    moments = {"wte.weight": np.zeros((10, 4), np.float32)}
    return rng, {**tensors, **add_prefix("optim.m.", moments)}


def test_checkpoint_round_trip_with_rng_state(tmp_path):
    rng, tensors = make_state()
    rng.standard_normal(17)  # advance it somewhere
    config = {"n_layer": 2, "d_model": 4, "dropout": 0.1, "name": "tiny", "tied": True}
    extra = {"step": np.int64(120), "lr": np.float32(0.5), "rng": rng.bit_generator.state, "history": [1.5, 1.25]}
    weights = save_checkpoint(tmp_path / "ckpt", tensors, config, extra)
    assert weights == tmp_path / "ckpt" / "model.safetensors"
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text()) == config
    expected_next = rng.standard_normal(5)

    ck = load_checkpoint(tmp_path / "ckpt")
    assert ck.config == config
    assert ck.extra_state["step"] == 120 and ck.extra_state["lr"] == 0.5 and ck.extra_state["history"] == [1.5, 1.25]
    assert set(ck.tensors) == set(tensors)
    for k, v in tensors.items():
        assert ck.tensors[k].dtype == v.dtype and ck.tensors[k].shape == v.shape and np.array_equal(ck.tensors[k], v)
    assert take_prefix("optim.m.", ck.tensors).keys() == {"wte.weight"}
    resumed = np.random.default_rng()
    resumed.bit_generator.state = ck.extra_state["rng"]
    assert np.array_equal(resumed.standard_normal(5), expected_next)  # training can continue exactly


def test_checkpoint_to_named_file(tmp_path):
    _, tensors = make_state()
    path = save_checkpoint(tmp_path / "run" / "step-10.safetensors", tensors, {"a": 1})
    assert path.name == "step-10.safetensors" and (tmp_path / "run" / "config.json").is_file()
    ck = load_checkpoint(tmp_path / "run" / "step-10.safetensors")
    assert ck.config == {"a": 1} and ck.extra_state == {}


def test_crash_during_checkpoint_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    _, tensors = make_state(0)
    save_checkpoint(tmp_path, tensors, {"v": 1}, {"step": 1})
    before = (tmp_path / "model.safetensors").read_bytes()

    real = st._raw_bytes
    calls = []

    def failing_raw_bytes(arr):
        calls.append(1)
        if len(calls) == 2:  # die after part of the data is written
            raise OSError("No space left on device")
        return real(arr)

    monkeypatch.setattr(st, "_raw_bytes", failing_raw_bytes)
    _, other = make_state(1)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path, other, {"v": 2}, {"step": 2})
    monkeypatch.undo()

    assert (tmp_path / "model.safetensors").read_bytes() == before
    ck = load_checkpoint(tmp_path)
    assert ck.config == {"v": 1} and ck.extra_state == {"step": 1}
    assert leftovers(tmp_path) == []


def test_torn_or_hand_edited_folder_is_detected(tmp_path):
    _, tensors = make_state()
    save_checkpoint(tmp_path, tensors, {"n_layer": 2})
    (tmp_path / "config.json").write_text(json.dumps({"n_layer": 3}))
    with pytest.raises(ValueError, match="mixes two saves"):
        load_checkpoint(tmp_path)
    os.remove(tmp_path / "config.json")  # without config.json the embedded copy is used
    assert load_checkpoint(tmp_path).config == {"n_layer": 2}


def test_hugging_face_style_folder_loads(tmp_path):
    weights = {"embeddings.word_embeddings.weight": np.ones((3, 2), np.float32)}
    st.save_file(weights, tmp_path / "model.safetensors", {"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 2}))
    ck = load_checkpoint(tmp_path)
    assert ck.config["model_type"] == "bert" and ck.extra_state == {} and ck.metadata == {"format": "pt"}


def test_checkpoint_errors(tmp_path):
    _, tensors = make_state()
    with pytest.raises(TypeError, match=r"extra_state\['opt'\]\['m'\].*ndarray.*tensors"):
        save_checkpoint(tmp_path, tensors, {}, {"opt": {"m": np.zeros(3)}})
    with pytest.raises(TypeError, match="non-string key 1"):
        save_checkpoint(tmp_path, tensors, {1: "a"})
    assert list(tmp_path.iterdir()) == []  # validation happens before any file is touched
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_checkpoint(tmp_path)
    save_checkpoint(tmp_path, tensors, {})
    raw = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(raw[: len(raw) - 7])
    with pytest.raises(ValueError, match="model.safetensors.*truncated"):
        load_checkpoint(tmp_path)


def test_temp_names_carry_the_writer_pid_so_dead_writers_can_be_told_apart(tmp_path):
    seen = []
    with pytest.raises(RuntimeError):
        with atomic_writer(tmp_path / "f.bin") as f:
            seen.extend(leftovers(tmp_path))
            raise RuntimeError("stop")
    assert len(seen) == 1 and seen[0].startswith(f".f.bin.{os.getpid()}-")
    assert leftovers(tmp_path) == []


def test_a_checkpoint_folder_replaced_with_atomic_folder_is_never_mixed(tmp_path):
    """The failure mode of two separate file writes (see test_torn_or_hand_edited_folder_is_detected) cannot occur."""
    _, tensors = make_state(0)
    with atomic_folder(tmp_path / "ckpt") as tmp:
        save_checkpoint(tmp, tensors, {"v": 1}, {"step": 1})
    _, other = make_state(1)
    with pytest.raises(OSError):
        with atomic_folder(tmp_path / "ckpt") as tmp:
            save_checkpoint(tmp, other, {"v": 2}, {"step": 2})      # weights written ...
            raise OSError("killed before config.json")              # ... config not
    ck = load_checkpoint(tmp_path / "ckpt")
    assert ck.config == {"v": 1} and ck.extra_state == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_reader_never_sees_a_mix_while_a_writer_replaces_the_folder(tmp_path):
    """`minilm generate` on a run that is still training: every load is one whole save."""

    target = tmp_path / "ckpt"

    def save(k):
        with atomic_folder(target) as tmp:
            save_checkpoint(tmp, {"w": np.full((64, 64), k, np.float32)}, {"k": k}, {"k": k})

    save(0)
    stop = threading.Event()

    def writer():
        k = 0
        while not stop.is_set():
            k += 1
            save(k)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = set()
        for _ in range(3000):
            if len(seen) > 20:             # the reads overlapped many saves
                break
            ck = load_checkpoint(target)
            k = ck.config["k"]
            assert ck.extra_state["k"] == k and np.all(ck.tensors["w"] == k)
            seen.add(k)
    finally:
        stop.set()
        thread.join()
    assert len(seen) > 20
