"""A seeded fuzz of the safetensors reader: damaged files load equal data or raise a clear error.

Each case takes a valid file and damages it one way: flipped bits, changed or inserted bytes,
a cut or extended file, a lying header length, or a header rewritten to lie (shapes, offsets,
dtypes, names, metadata), with a correct length field so that only the header's own checks
can catch it. The reader must then either

* raise SafetensorsError (a ValueError) naming the file, in one line, or
* return arrays: the same names, dtypes and shapes as the original whenever the header bytes
  were not touched (the format has no checksum, so damaged data bytes load as other values);

never another exception, never a hang, never an allocation beyond the file's own size.
"""
import json
import struct
import time
import tracemalloc

import numpy as np
import pytest

from minilm.io.safetensors import DTYPES, SafetensorsError, load, load_file, read_header, save

_NUMPY = {"F64": "f8", "F32": "f4", "F16": "f2", "I64": "i8", "I32": "i4", "I16": "i2", "I8": "i1",
          "U64": "u8", "U32": "u4", "U16": "u2", "U8": "u1", "BOOL": "bool"}
JUNK_VALUES = [None, True, -1, 0, 1, 7, 2**31, 2**63, 2**64 + 1, 10**4000, 1.5, float("nan"), "3", "F32", [],
               [1], [1, 2], [1, 2, 3], [-1, 4], [2**62, 2**62], {}, {"a": 1}, [[1]], "x" * 300]


def random_file(rng):
    """A small valid file: 0-4 tensors of random dtypes and shapes, sometimes metadata."""
    tensors = {}
    for k in range(int(rng.integers(0, 5))):
        name = str(rng.choice(["w", "b", "layer.0.weight", "é", ""])) + str(k)
        dtype = np.dtype(_NUMPY[str(rng.choice(list(_NUMPY)))])
        shape = tuple(int(d) for d in rng.integers(0, 4, int(rng.integers(0, 4))))
        raw = rng.integers(0, 256, int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
        if dtype.kind == "b":
            raw = raw % 2
        tensors[name] = raw.view(dtype).reshape(shape)
    metadata = {"format": "np", "note": "ü"} if rng.random() < 0.3 else None
    return tensors, save(tensors, metadata)


def header_length(data):
    return struct.unpack("<Q", data[:8])[0]


def rewrite_header(rng, data):
    """The header parsed, one field made to lie, written back with a correct length field."""
    n = header_length(data)
    header = json.loads(data[8:8 + n])
    names = [k for k in header if k != "__metadata__"]
    what = rng.integers(0, 6)
    if what == 0 or not names:
        header[str(rng.choice(["__metadata__", "new", "x"]))] = JUNK_VALUES[rng.integers(len(JUNK_VALUES))]
    else:
        name = names[rng.integers(len(names))]
        entry = header[name]
        if what == 1:
            entry[str(rng.choice(["dtype", "shape", "data_offsets"]))] = JUNK_VALUES[rng.integers(len(JUNK_VALUES))]
        elif what == 2:                                   # a shape that is plausible but wrong
            entry["shape"] = [int(d) for d in rng.integers(0, 5, int(rng.integers(0, 4)))] + \
                [int(rng.choice([0, 1, 3, 2**20, 2**40, 2**62]))]
        elif what == 3:                                   # offsets shifted, swapped or stretched
            a, b = entry["data_offsets"]
            delta = int(rng.choice([-8, -1, 1, 8, 2**40]))
            entry["data_offsets"] = [[a + delta, b + delta], [b, a], [a, b + delta], [a + delta, b]][rng.integers(4)]
        elif what == 4:                                   # another dtype of the same or another size
            entry["dtype"] = str(rng.choice(list(DTYPES) + ["F8", "f32", "Q4"]))
        else:
            del entry[str(rng.choice(["dtype", "shape", "data_offsets"]))]
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def damage(rng, data):
    """(damaged bytes, whether the 8-byte length and the header are exactly as they were)."""
    n = header_length(data)
    kind = rng.integers(0, 8)
    out = bytearray(data)
    if kind == 0:                                             # flip one bit
        pos = int(rng.integers(len(out)))
        out[pos] ^= 1 << int(rng.integers(8))
        return bytes(out), pos >= 8 + n
    if kind == 1:                                             # set a byte to anything
        pos = int(rng.integers(len(out)))
        out[pos] = int(rng.integers(256))
        return bytes(out), pos >= 8 + n
    if kind == 2:                                             # cut the file short
        return bytes(out[: int(rng.integers(len(out)))]), False
    if kind == 3:                                             # bytes appended
        return bytes(out) + bytes(rng.integers(0, 256, int(rng.integers(1, 20)), dtype=np.uint8)), False
    if kind == 4:                                             # bytes inserted
        pos = int(rng.integers(len(out) + 1))
        extra = bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
        return bytes(out[:pos]) + extra + bytes(out[pos:]), False
    if kind == 5:                                             # a lying header length
        claims = [0, 1, 7, n - 8, n - 1, n + 1, n + 8, len(out), 10**8, 2**63, 2**64 - 1]
        return struct.pack("<Q", max(claims[rng.integers(len(claims))], 0)) + bytes(out[8:]), False
    return rewrite_header(rng, data), False                   # kinds 6, 7: a header that lies


def check_case(tensors, original, bad, header_intact, where, loaded):
    """The oracle for one case, given what the reader did (loaded: dict or the exception)."""
    if isinstance(loaded, BaseException):
        assert isinstance(loaded, SafetensorsError), f"{where}: {type(loaded).__name__}: {loaded}"
        message = str(loaded)
        assert where in message and "\n" not in message and len(message) < 600, message
        return
    if bad == original:
        assert loaded.keys() == tensors.keys()
        for name, arr in tensors.items():
            assert loaded[name].tobytes() == arr.tobytes()
    if header_intact:
        for name, arr in tensors.items():
            assert loaded[name].dtype == arr.dtype and loaded[name].shape == arr.shape
    assert sum(a.nbytes for a in loaded.values()) <= 2 * len(bad)    # (BF16 widens to float32: 2x)


def attempt(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except Exception as err:                                  # the oracle decides whether it was allowed
        return err


def fuzz(seed, cases, tmp_path):
    rng = np.random.default_rng(seed)
    path = tmp_path / "fuzz.safetensors"
    tracemalloc.start()
    try:
        for case in range(cases):
            tensors, original = random_file(rng)
            bad, header_intact = damage(rng, original)
            start = time.perf_counter()
            where = f"fuzz-case-{case}"
            check_case(tensors, original, bad, header_intact, where, attempt(load, bad, where=where))
            if case % 8 == 0:                                 # the file readers too, on every 8th case
                path.write_bytes(bad)
                check_case(tensors, original, bad, header_intact, str(path), attempt(load_file, path))
                got = attempt(read_header, path)
                if isinstance(got, BaseException):
                    check_case(tensors, original, bad, header_intact, str(path), got)
            assert time.perf_counter() - start < 1.0, f"case {case} took {time.perf_counter() - start:.2f} s"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, f"peak {peak:,} bytes for files of a few hundred bytes"


def test_fuzz_the_reader(tmp_path):
    fuzz(seed=20240611, cases=2000, tmp_path=tmp_path)


@pytest.mark.slow
def test_fuzz_the_reader_longer(tmp_path):
    """30,000 more cases: about 40 s on one core of the 2-core CI machine."""
    fuzz(seed=7, cases=30_000, tmp_path=tmp_path)


def test_the_damage_is_real():
    """The fuzz is only worth something if most cases are refused, by many different checks."""
    rng = np.random.default_rng(1)
    refused, reasons = 0, set()
    for case in range(1000):
        tensors, original = random_file(rng)
        bad, _ = damage(rng, original)
        got = attempt(load, bad, where="x")
        if isinstance(got, SafetensorsError):
            refused += 1
            reasons.add(str(got).split(":")[2 if "tensor" in str(got) else 1][:25])
    assert refused > 600 and len(reasons) >= 8, (refused, reasons)
