"""minilm.data.split and minilm.data.token_arrays: the train/validation cut, compact id arrays, the token cache."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm.data import cached_token_array, encode_to_array, split_text, token_cache_key


def test_split_prefers_a_document_boundary():
    docs = [f"document {i}\n" + "word " * (10 + 7 * (i % 5)) for i in range(200)]
    text = "\n\n".join(docs)
    train, val = split_text(text, val_fraction=0.1)
    assert train + val == text
    assert train.endswith("\n\n") and val.startswith("document ")
    assert abs(len(val) / len(text) - 0.1) < 0.02
    assert split_text(text, 0.1) == (train, val)  # deterministic


def test_split_falls_back_to_lines_then_characters():
    lines = "\n".join(f"line {i:04d}" for i in range(1000))
    train, val = split_text(lines, 0.25)
    assert train.endswith("\n") and val.startswith("line ") and train + val == lines
    assert abs(len(val) / len(lines) - 0.25) < 0.01
    blob = "x" * 1000
    train, val = split_text(blob, 0.1)
    assert (len(train), len(val)) == (900, 100)


def test_split_ignores_boundaries_far_from_the_cut():
    text = "a\n" + "b" * 100_000  # the only newline is at 0.002%: do not cut there
    train, val = split_text(text, 0.5)
    assert len(train) == 50_001


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab \n", min_size=2, max_size=400), st.floats(0.01, 0.99))
def test_split_always_gives_two_non_empty_parts(text, frac):
    train, val = split_text(text, frac)
    assert train + val == text and train and val


def test_split_errors():
    with pytest.raises(ValueError, match="val_fraction"):
        split_text("abc", 1.0)
    with pytest.raises(ValueError, match="0 characters"):
        split_text("", 0.1)
    with pytest.raises(TypeError, match="str"):
        split_text(b"abc", 0.1)


def test_encode_to_array_dtypes_and_range_check():
    a = encode_to_array([0, 5, 65535], vocab_size=65536)
    assert a.dtype == np.uint16 and a.tolist() == [0, 5, 65535]
    b = encode_to_array(np.array([0, 65536, 99_999]), vocab_size=100_000)
    assert b.dtype == np.uint32 and b.tolist() == [0, 65536, 99_999]
    assert encode_to_array(iter([1, 2]), 50257).dtype == np.uint16  # GPT-2's vocabulary fits in 16 bits
    assert encode_to_array([], 10).shape == (0,)
    with pytest.raises(ValueError, match=r"1 ids outside \[0, 10\), the first at position 2: 10"):
        encode_to_array([1, 2, 10], vocab_size=10)
    with pytest.raises(ValueError, match="outside"):
        encode_to_array([-1], vocab_size=10)
    with pytest.raises(ValueError, match="1-D"):
        encode_to_array(np.zeros((2, 2), int), 10)
    with pytest.raises(TypeError, match="integers"):
        encode_to_array([1.5], 10)
    with pytest.raises(ValueError, match="vocab_size"):
        encode_to_array([1], 0)


def test_token_cache_key_depends_on_text_and_tokenizer():
    k = token_cache_key("some text", {"vocab": {"a": 0, "b": 1}})
    assert k == token_cache_key("some text", {"vocab": {"b": 1, "a": 0}})  # key order does not matter
    assert len(k) == 64
    assert k != token_cache_key("some text!", {"vocab": {"a": 0, "b": 1}})
    assert k != token_cache_key("some text", {"vocab": {"a": 0, "b": 2}})
    assert token_cache_key("ab", "c") != token_cache_key("a", "bc")  # parts are length-prefixed


def test_cached_token_array_builds_once_and_never_pickles(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return encode_to_array(np.arange(1000) % 300, vocab_size=300)

    key = token_cache_key("corpus", "{}")
    a = cached_token_array(tmp_path, key, build)
    b = cached_token_array(tmp_path, key, build)
    assert len(calls) == 1 and b.dtype == np.uint16 and np.array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == [f"tokens-{key}.npy"]
    assert np.array_equal(np.load(tmp_path / f"tokens-{key}.npy", allow_pickle=False), a)


def test_cached_token_array_rebuilds_a_broken_file_and_checks_inputs(tmp_path):
    key = "k1"
    (tmp_path / "tokens-k1.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        arr = cached_token_array(tmp_path, key, lambda: np.array([1, 2, 3], np.uint16))
    assert arr.tolist() == [1, 2, 3]
    assert cached_token_array(tmp_path, key, lambda: pytest.fail("should be cached")).tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="key"):
        cached_token_array(tmp_path, "../evil", lambda: np.zeros(1, int))
    with pytest.raises(TypeError, match="1-D integer"):
        cached_token_array(tmp_path, "k2", lambda: [1, 2, 3])
    assert not (tmp_path / "tokens-k2.npy").exists()


def test_split_moves_back_to_a_line_end_before_the_cut_but_not_past_the_window():
    text = "b" * 850 + "\n" + "b" * 149                  # cut at 900; the newline is 50 before it
    assert len(split_text(text, 0.1)[0]) == 851
    far = "b" * 10_000 + "\n" + "b" * 89_999              # window 2000 around the cut at 50_000: too far
    assert len(split_text(far, 0.5)[0]) == 50_000


UNPICKLED = []


def _record_unpickling():
    UNPICKLED.append(1)
    return 0


class _Booby:
    def __reduce__(self):
        return (_record_unpickling, ())


def test_a_cache_file_with_pickled_objects_is_never_unpickled(tmp_path):
    key = token_cache_key("corpus", "{}")
    np.save(tmp_path / f"tokens-{key}.npy", np.array([_Booby()], dtype=object), allow_pickle=True)
    UNPICKLED.clear()
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        arr = cached_token_array(tmp_path, key, lambda: np.array([4, 5], np.uint16))
    assert UNPICKLED == [] and arr.tolist() == [4, 5]
    nested = tmp_path / "a" / "b"                         # a cache folder that does not exist yet
    assert cached_token_array(nested, key, lambda: np.array([6], np.uint16)).tolist() == [6]
    assert (nested / f"tokens-{key}.npy").is_file()
