"""WordPieceTokenizer against fixtures made by the reference BERT tokenizer (HF `tokenizers`).

The fixtures and the real uncased BERT vocab.txt are committed in tests/fixtures/wordpiece/
(made by scripts/make_wordpiece_fixtures.py); this file needs NumPy and the stdlib only.
"""

import hashlib
import json
import os

import numpy as np
import pytest

from minilm.tokenizers import WordPieceTokenizer, load_tokenizer
from minilm.tokenizers.bert_inputs import longest_first_lengths

FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "fixtures", "wordpiece")
VOCAB = os.path.join(FIXTURE_DIR, "vocab.txt")
with open(os.path.join(FIXTURE_DIR, "fixtures.json"), encoding="utf-8") as _f:
    FIX = json.load(_f)


@pytest.fixture(scope="module")
def tok():
    return WordPieceTokenizer.from_vocab_file(VOCAB, lowercase=True)


def _label(text, n=40):
    return repr(text[:n])


def test_vocab_is_the_one_the_fixtures_were_made_with():
    with open(VOCAB, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == FIX["source"]["vocab_sha256"]


def test_special_token_ids(tok):
    assert tok.vocab_size == 30522
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == \
        (0, 100, 101, 102, 103)
    assert tok.id_to_token(tok.mask_token_id) == "[MASK]"


# ---- the fixtures -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", FIX["singles"], ids=[_label(c["text"]) for c in FIX["singles"]])
def test_single_texts(tok, case):
    assert tok.tokenize(case["text"]) == case["tokens"]
    assert tok.encode(case["text"]) == case["ids"]
    out = tok(case["text"], return_arrays=False)
    assert out == {"input_ids": case["ids"], "token_type_ids": case["token_type_ids"],
                   "attention_mask": case["attention_mask"]}
    assert tok.decode(case["ids"]) == case["decoded"]
    assert tok.decode(case["ids"], skip_special_tokens=False) == case["decoded_with_special"]


@pytest.mark.parametrize("case", FIX["pairs"], ids=[_label(c["text"], 20) for c in FIX["pairs"]])
def test_pairs(tok, case):
    assert tok.encode(case["text"], case["text_pair"]) == case["ids"]
    out = tok(case["text"], case["text_pair"])
    assert out["input_ids"].tolist() == [case["ids"]]
    assert out["token_type_ids"].tolist() == [case["token_type_ids"]]
    assert out["attention_mask"].tolist() == [case["attention_mask"]]
    assert tok.decode(case["ids"]) == case["decoded"]


def test_truncation_fixtures(tok):
    assert len(FIX["truncation"]) > 100
    for case in FIX["truncation"]:
        out = tok(case["text"], case["text_pair"], max_length=case["max_length"], truncation=True,
                  return_arrays=False)
        where = (case["max_length"], _label(case["text"], 20), case["text_pair"] is not None)
        assert out["input_ids"] == case["ids"], where
        assert out["token_type_ids"] == case["token_type_ids"], where
        assert out["attention_mask"] == case["attention_mask"], where
        assert tok.encode(case["text"], case["text_pair"], max_length=case["max_length"], truncation=True) == \
            case["ids"], where


@pytest.mark.parametrize("case", FIX["padding"], ids=[f"{c['padding']}-{c['max_length']}-{c['text_pairs'] is not None}"
                                                     for c in FIX["padding"]])
def test_padded_batches(tok, case):
    out = tok(case["texts"], case["text_pairs"], max_length=case["max_length"], truncation=case["truncation"],
              padding=case["padding"])
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert out[key].dtype == np.int64
        assert out[key].shape == (len(case["texts"]), len(case[key][0]))
        np.testing.assert_array_equal(out[key], np.array(case[key]), err_msg=key)


# ---- [UNK], long words, special tokens in text ---------------------------------------------------
def test_unknown_words(tok):
    # a word with a piece the vocabulary cannot spell is one [UNK], whatever its length
    assert tok.tokenize("hello 🦜parrot world") == ["hello", "[UNK]", "world"]
    assert tok.tokenize("a" * 100) != ["[UNK]"]
    assert "".join(p.lstrip("#") for p in tok.tokenize("a" * 100)) == "a" * 100
    assert tok.tokenize("a" * 101) == ["[UNK]"]
    # the limit counts characters after normalisation (accents stripped first)
    assert tok.tokenize("é" * 100) == tok.tokenize("e" * 100)
    assert tok.encode("🦜", add_special_tokens=False) == [tok.unk_token_id]


def test_greedy_longest_match_first(tok):
    pieces = tok.tokenize("unaffable")
    assert pieces[0] == "una" and all(p.startswith("##") for p in pieces[1:])
    assert "".join(p.lstrip("#") for p in pieces) == "unaffable"
    # each piece is the longest vocabulary entry that matches at its position
    start, word = 0, "unaffable"
    for piece in pieces:
        body = piece[2:] if piece.startswith("##") else piece
        for longer in range(len(word), start + len(body), -1):
            cand = word[start:longer] if start == 0 else "##" + word[start:longer]
            assert cand not in tok.token_ids
        start += len(body)


def test_special_tokens_are_never_split(tok):
    assert tok.tokenize("x[MASK]y [SEP]") == ["x", "[MASK]", "y", "[SEP]"]
    assert tok.tokenize("[mask]") == ["[", "mask", "]"]  # matched exactly, before lower-casing


# ---- truncation and padding rules ----------------------------------------------------------------
def test_longest_first_lengths_rule():
    for budget in range(0, 12):
        for la in range(0, 15):
            for lb in range(0, 15):
                ka, kb = longest_first_lengths(la, lb, budget)
                assert 0 <= ka <= la and 0 <= kb <= lb
                assert ka + kb == min(la + lb, budget)          # fill the budget, never more
                if la + lb <= budget:
                    continue
                if 2 * min(la, lb) <= budget:                   # the shorter fits in half: kept whole
                    assert (ka == la) if la <= lb else (kb == lb)
                else:                                           # both long: even split,
                    assert abs(ka - kb) <= 1                    # the odd one to the longer (B on a tie)
                    if ka != kb:
                        assert (ka > kb) == (la > lb)


def test_pair_truncation(tok):
    a = "one two three four five six seven eight nine ten"
    b = "alpha beta gamma"
    out = tok(a, b, max_length=10, truncation=True, return_arrays=False)
    tokens = tok.convert_ids_to_tokens(out["input_ids"])
    # budget 7: "alpha beta gamma" (3) fits in half, so it stays whole and A keeps 4
    assert tokens == ["[CLS]", "one", "two", "three", "four", "[SEP]", "alpha", "beta", "gamma", "[SEP]"]
    assert out["token_type_ids"] == [0] * 6 + [1] * 4
    out = tok(a, a, max_length=9, truncation=True, return_arrays=False)
    # both long: budget 6 split 3 / 3
    assert tok.convert_ids_to_tokens(out["input_ids"]) == \
        ["[CLS]", "one", "two", "three", "[SEP]", "one", "two", "three", "[SEP]"]
    with pytest.raises(ValueError, match="max_length=2"):
        tok(a, b, max_length=2, truncation=True)
    # truncation=True without max_length uses model_max_length (512)
    long_text = "word " * 1000
    assert len(tok.encode(long_text, truncation=True)) == 512


def test_call_shapes_and_errors(tok):
    out = tok(["short", "a somewhat longer text"], padding="longest")
    assert out["input_ids"].shape == out["attention_mask"].shape == (2, 6)
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6]
    assert out["input_ids"][0, 3:].tolist() == [tok.pad_token_id] * 3
    with pytest.raises(ValueError, match="padding='longest'"):
        tok(["short", "a somewhat longer text"])
    lists = tok(["short", "a somewhat longer text"], return_arrays=False)
    assert [len(r) for r in lists["input_ids"]] == [3, 6]
    with pytest.raises(ValueError, match="2 texts but 1 text pairs"):
        tok(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="padding must be"):
        tok("a", padding="sideways")
    assert tok("a", padding="max_length", max_length=7)["input_ids"].shape == (1, 7)


def test_decode_joins_pieces(tok):
    ids = tok.encode("Tokenizers split unaffable words, don't they?")
    assert tok.decode(ids) == "tokenizers split unaffable words, don ' t they?"
    assert tok.decode(np.array(ids)) == tok.decode(ids)


def test_save_load(tok, tmp_path):
    path = tmp_path / "wp.json"
    tok.save(path)
    loaded = load_tokenizer(path)
    assert isinstance(loaded, WordPieceTokenizer)
    for case in FIX["singles"][::10]:
        assert loaded.encode(case["text"]) == case["ids"]


def test_vocab_file_errors(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match="cls_token='\\[CLS\\]' is not in the vocabulary"):
        WordPieceTokenizer.from_vocab_file(path)
