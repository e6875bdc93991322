"""ByteLevelBPE: exact round trips, special tokens, persistence, and the merges it learns."""

import json
from collections import Counter
from pydoc_data.topics import topics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm.tokenizers import ByteLevelBPE, load_tokenizer
from minilm.tokenizers.bpe_train import learn_merges, merge_pair, pretokenize

EOT = "<|endoftext|>"


def _docs_text(n_chars: int) -> str:
    return "\n\n".join(topics[k] for k in sorted(topics))[:n_chars]


@pytest.fixture(scope="module")
def trained():
    return ByteLevelBPE.train(_docs_text(60_000), vocab_size=256 + 400 + 1)


# ---- round trips --------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.text())
def test_round_trip_any_unicode(trained, text):
    ids = trained.encode(text)
    assert all(0 <= i < trained.vocab_size for i in ids)
    assert trained.decode(ids) == text


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_pretokens_cover_the_text(text):
    assert "".join(pretokenize(text)) == text


def test_round_trip_awkward_strings(trained):
    for text in ["", " ", "\n\n\n", "  two  spaces  ", "日本語のテキスト", "👨‍👩‍👧 family", "e\u0301",
                 "\x00\x7f\ufeff", "tabs\tand\r\nCRLF", "it's they've I'm", "x" * 5000, "__init__(self)"]:
        assert trained.decode(trained.encode(text)) == text


def test_merges_compress_text(trained):
    text = _docs_text(60_000)
    assert len(trained.encode(text)) < 0.5 * len(text.encode("utf-8"))


def test_encode_agrees_with_the_training_segmentation(trained):
    # Applying merges by rank must give the same pieces as replaying the merge list in order.
    for word in {w for w in pretokenize(_docs_text(5_000))}:
        ids = list(word.encode("utf-8"))
        for k, pair in enumerate(trained.merges):
            ids = merge_pair(ids, pair, 256 + k)
        assert trained.encode(word) == ids, word


def test_decode_of_a_partial_character_uses_the_replacement_character(trained):
    ids = trained.encode("é")          # two bytes, maybe one token
    as_bytes = b"".join(trained.token_bytes(i) for i in ids)
    assert as_bytes == "é".encode("utf-8")
    assert trained.decode([0xC3]) == "\ufffd"
    with pytest.raises(UnicodeDecodeError):
        trained.decode([0xC3], errors="strict")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        trained.decode([trained.vocab_size])


# ---- special tokens -----------------------------------------------------------------------
def test_special_tokens_in_running_text(trained):
    eot = trained.token_to_id(EOT)
    assert eot == trained.vocab_size - 1 == 256 + len(trained.merges)
    text = f"first document{EOT}second{EOT}{EOT}"
    ids = trained.encode(text)
    assert ids.count(eot) == 3
    assert ids[-2:] == [eot, eot]
    assert trained.decode(ids) == text
    # treated as plain text when not allowed
    plain = trained.encode(text, allowed_special="none")
    assert eot not in plain and trained.decode(plain) == text
    assert trained.encode(text, allowed_special=[EOT]) == ids
    with pytest.raises(ValueError, match="not special tokens"):
        trained.encode(text, allowed_special=["<|nope|>"])


def test_special_tokens_are_not_learned_from():
    text = ("a cat" + EOT) * 50
    tok = ByteLevelBPE.train(text, vocab_size=300, special_tokens=(EOT, "<|pad|>"))
    learned = [tok.token_bytes(256 + k) for k in range(len(tok.merges))]
    assert not any(b"<" in t or b"|" in t for t in learned)
    assert tok.special_tokens == {EOT: 256 + len(tok.merges), "<|pad|>": 257 + len(tok.merges)}
    assert tok.encode("<|pad|>a cat") == [tok.token_to_id("<|pad|>")] + tok.encode("a cat")


def test_vocabulary_helpers(trained):
    assert trained.vocab_size == 256 + len(trained.merges) + 1
    for i in range(trained.vocab_size):
        # different merge paths may build the same bytes; the id found must at least spell them
        assert trained.token_bytes(trained.token_to_id(trained.token_bytes(i))) == trained.token_bytes(i)
    assert trained.token_to_id(EOT.encode("utf-8")) == trained.token_to_id(EOT) == trained.vocab_size - 1
    assert trained.id_to_token(trained.vocab_size - 1) == EOT
    assert trained.id_to_token(ord("a")) == "a"
    assert trained.id_to_token(0xC3) == "\\xc3"
    with pytest.raises(KeyError):
        trained.token_to_id("this is surely not a single token")


def test_vocab_size_too_small():
    with pytest.raises(ValueError, match="smaller than 256"):
        ByteLevelBPE.train("abc", vocab_size=256)


# ---- persistence ------------------------------------------------------------------------------
def test_save_load_gives_identical_encodings(trained, tmp_path):
    path = tmp_path / "bpe.json"
    trained.save(path)
    assert json.loads(path.read_text())["type"] == "ByteLevelBPE"
    text = _docs_text(20_000) + f"{EOT} naïve 日本 🚀"
    for loaded in (ByteLevelBPE.load(path), load_tokenizer(path)):
        assert isinstance(loaded, ByteLevelBPE)
        assert loaded.merges == trained.merges
        assert loaded.vocab_size == trained.vocab_size
        assert loaded.encode(text) == trained.encode(text)


def test_load_rejects_merges_that_refer_forward():
    with pytest.raises(ValueError, match="merge 0"):
        ByteLevelBPE.from_dict({"type": "ByteLevelBPE", "merges": [[97, 300]], "special_tokens": [],
                                "pattern": r"\S+|\s+"})


# ---- the merges themselves ---------------------------------------------------------------------
def brute_force_merges(text: str, num_merges: int, min_frequency: int = 2) -> list[tuple[int, int]]:
    """Recount every pair over every pre-token occurrence at every step (no word table, no heap)."""
    words = [list(p.encode("utf-8")) for p in pretokenize(text)]
    merges = []
    for k in range(num_merges):
        counts = Counter()
        for w in words:
            for i in range(len(w) - 1):
                counts[(w[i], w[i + 1])] += 1
        if not counts:
            break
        best_count = max(counts.values())
        if best_count < min_frequency:
            break
        best = min(p for p, c in counts.items() if c == best_count)   # ties -> smallest pair
        merges.append(best)
        new_words = []
        for w in words:
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(256 + k)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words.append(out)
        words = new_words
    return merges


def test_first_merges_match_a_brute_force_count():
    text = _docs_text(8_000)
    expected = brute_force_merges(text, 60)
    tok = ByteLevelBPE.train(text, vocab_size=256 + 60 + 1)
    assert tok.merges == expected


def test_learns_until_no_pair_repeats():
    text = "low lower lowest newer newest wider " * 3
    expected = brute_force_merges(text, 1000)
    assert len(expected) < 1000
    assert ByteLevelBPE.train(text, vocab_size=2000).merges == expected


def test_textbook_example():
    # "aaabdaaabac": "aa" occurs 4 times (overlaps count), "ab" twice -> first merge is (a, a).
    merges = learn_merges({b"aaabdaaabac": 1}, 3, min_frequency=1)
    assert merges[0] == (ord("a"), ord("a"))
    assert merges == brute_force_merges("aaabdaaabac", 3, min_frequency=1)
    # weights: a word seen 10 times outweighs one seen once
    assert learn_merges({b"xy": 10, b"ab": 1}, 1) == [(ord("x"), ord("y"))]


def test_repr_names_the_sizes(trained):
    assert repr(trained) == f"ByteLevelBPE(vocab_size={trained.vocab_size}, merges=400, special_tokens=['{EOT}'])"
