"""Tokenizer files from a run folder are untrusted input: every field is checked, no regex is compiled."""
import json
import time

import pytest

from minilm.tokenizers import ByteLevelBPE, CharTokenizer, WordPieceTokenizer, load_tokenizer
from minilm.tokenizers.bpe_train import GPT2_LIKE_SPLIT_PATTERN

BPE = {"type": "ByteLevelBPE", "version": 1, "merges": [[104, 101], [256, 108]], "special_tokens": ["<|endoftext|>"]}
CHAR = {"type": "CharTokenizer", "version": 1, "chars": ["\n", " ", "a", "b"]}
WORDPIECE = {"type": "WordPieceTokenizer", "version": 1,
             "vocab": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "##s"], "lowercase": True}


def _write(tmp_path, data):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("base", [BPE, CHAR, WORDPIECE], ids=["bpe", "char", "wordpiece"])
def test_the_good_files_load(tmp_path, base):
    tok = load_tokenizer(_write(tmp_path, base))
    again = load_tokenizer(_write(tmp_path, tok.to_dict()))
    assert type(again) is type(tok) and again.vocab_size == tok.vocab_size


# (base file, field, bad value or DELETE, words the error must contain)
DELETE = object()
BAD_FIELDS = [
    (CHAR, "chars", 5, "'chars'"),
    (CHAR, "chars", None, "'chars'"),
    (CHAR, "chars", [], "'chars'"),
    (CHAR, "chars", ["a", "bc"], "'chars'"),
    (CHAR, "chars", ["a", 1], "'chars'"),
    (CHAR, "chars", ["a", "a"], "repeats"),
    (CHAR, "chars", DELETE, "'chars'"),
    (CHAR, "version", 7, "'version'"),
    (CHAR, "extra", 1, "unknown fields"),
    (BPE, "merges", None, "'merges'"),
    (BPE, "merges", 5, "'merges'"),
    (BPE, "merges", [[1, 2, 3]], "merge 0"),
    (BPE, "merges", [[1]], "merge 0"),
    (BPE, "merges", [["a", "b"]], "merge 0"),
    (BPE, "merges", [[1.0, 2]], "merge 0"),
    (BPE, "merges", [[True, 2]], "merge 0"),
    (BPE, "merges", [[-1, 2]], "merge 0"),
    (BPE, "merges", [[104, 101], [999, 1]], "merge 1"),
    (BPE, "merges", {"a": 1}, "'merges'"),
    (BPE, "merges", DELETE, "'merges'"),
    (BPE, "special_tokens", 5, "'special_tokens'"),
    (BPE, "special_tokens", None, "'special_tokens'"),
    (BPE, "special_tokens", [""], "'special_tokens'"),
    (BPE, "special_tokens", [3], "'special_tokens'"),
    (BPE, "special_tokens", ["x", "x"], "'special_tokens'"),
    (BPE, "pattern", r"(a|a)+$", "'pattern'"),
    (BPE, "pattern", 5, "'pattern'"),
    (BPE, "type", "bytelevelbpe", "'type'"),
    (WORDPIECE, "vocab", "abc", "'vocab'"),
    (WORDPIECE, "vocab", [1, 2], "'vocab'"),
    (WORDPIECE, "lowercase", "yes", "'lowercase'"),
    (WORDPIECE, "strip_accents", 0, "'strip_accents'"),
    (WORDPIECE, "max_input_chars_per_word", -3, "'max_input_chars_per_word'"),
    (WORDPIECE, "model_max_length", 1.5, "'model_max_length'"),
    (WORDPIECE, "mask_token", 5, "'mask_token'"),
    (WORDPIECE, "mask_token", "[NOPE]", "mask_token"),
]


@pytest.mark.parametrize("base, field, value, words", BAD_FIELDS,
                         ids=[f"{b['type']}-{f}-{k}" for k, (b, f, _, _) in enumerate(BAD_FIELDS)])
def test_a_bad_field_is_one_line_naming_file_and_field(tmp_path, base, field, value, words):
    data = dict(base)
    if value is DELETE:
        del data[field]
    else:
        data[field] = value
    path = _write(tmp_path, data)
    with pytest.raises(ValueError) as info:
        load_tokenizer(path)
    message = str(info.value)
    assert str(path) in message and words in message and "\n" not in message
    kind = {"ByteLevelBPE": ByteLevelBPE, "CharTokenizer": CharTokenizer, "WordPieceTokenizer": WordPieceTokenizer}
    with pytest.raises(ValueError, match="tokenizer.json"):      # the class's own .load checks the same
        kind[base["type"]].load(path)


@pytest.mark.parametrize("content", ["[1, 2]", "5", "null", '"ByteLevelBPE"', "{", "[" * 100_000, '{"type": [1]}'])
def test_files_that_are_not_a_tokenizer_object(tmp_path, content):
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="tokenizer.json"):
        load_tokenizer(path)


def test_not_utf8_a_folder_and_a_missing_file(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(b'{"type": "\xff"}')
    with pytest.raises(ValueError, match="UTF-8"):
        load_tokenizer(path)
    folder = tmp_path / "folder.json"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        load_tokenizer(folder)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_tokenizer(tmp_path / "missing.json")


def test_a_pattern_from_a_file_is_never_compiled(tmp_path):
    """(a|a)+$ takes re exponential time on 'aaaa...b'; a file naming it is refused at once."""
    data = dict(BPE, pattern=r"(a|a)+$")
    start = time.perf_counter()
    with pytest.raises(ValueError, match="pattern"):
        load_tokenizer(_write(tmp_path, data))
    assert time.perf_counter() - start < 1.0
    # Files written before the pattern left the format carry the built-in one: still accepted.
    old = load_tokenizer(_write(tmp_path, dict(BPE, pattern=GPT2_LIKE_SPLIT_PATTERN)))
    assert old.encode("hello world") == ByteLevelBPE([(104, 101), (256, 108)]).encode("hello world")
    assert "pattern" not in old.to_dict()


def test_merges_that_would_need_a_giant_allocation_are_refused(tmp_path):
    """Each merge doubling the previous token: 60 merges would ask for 2**60 bytes."""
    merges = [[97, 97]] + [[256 + k, 256 + k] for k in range(59)]
    start = time.perf_counter()
    with pytest.raises(ValueError, match="'merges'.*MiB"):
        load_tokenizer(_write(tmp_path, dict(BPE, merges=merges)))
    assert time.perf_counter() - start < 2.0
