"""CharTokenizer: round trips, the unknown-character error, persistence."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm.tokenizers import CharTokenizer, load_tokenizer

CORPUS = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"


def test_vocabulary_is_the_sorted_distinct_characters():
    tok = CharTokenizer.from_text(CORPUS)
    assert tok.vocab_size == len(set(CORPUS))
    assert tok.itos == sorted(set(CORPUS))
    # ids follow code-point order, whatever order the corpus had
    assert CharTokenizer.from_text(CORPUS[::-1]).itos == tok.itos


def test_round_trip_on_the_corpus():
    tok = CharTokenizer.from_text(CORPUS)
    ids = tok.encode(CORPUS)
    assert len(ids) == len(CORPUS)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == CORPUS


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1), st.data())
def test_round_trip_property(corpus, data):
    tok = CharTokenizer.from_text(corpus)
    text = data.draw(st.text(alphabet=st.sampled_from(sorted(set(corpus)))))
    assert tok.decode(tok.encode(text)) == text


def test_unknown_characters_are_named_with_their_positions():
    tok = CharTokenizer.from_text("hello world")
    with pytest.raises(ValueError) as err:
        tok.encode("hello, wörld")
    message = str(err.value)
    assert "','" in message and "position 5" in message
    assert "'ö'" in message and "U+00F6" in message and "position 8" in message
    assert "2 character(s)" in message


def test_unknown_character_error_lists_a_bounded_number():
    tok = CharTokenizer.from_text("ab")
    with pytest.raises(ValueError, match="and 40 more"):
        tok.encode("z" * 50)


def test_decode_rejects_ids_outside_the_vocabulary():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match="id 3 at position 1"):
        tok.decode([0, 3])


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")
    with pytest.raises(TypeError):
        CharTokenizer.from_text(["a", "b"])
    with pytest.raises(ValueError, match="single character"):
        CharTokenizer(["ab"])


def test_save_load_and_load_tokenizer(tmp_path):
    corpus = CORPUS + "é中\x00\U0001F600"
    tok = CharTokenizer.from_text(corpus)
    path = tmp_path / "char.json"
    tok.save(path)
    assert json.loads(path.read_text())["type"] == "CharTokenizer"
    for loaded in (CharTokenizer.load(path), load_tokenizer(path)):
        assert isinstance(loaded, CharTokenizer)
        assert loaded.itos == tok.itos
        assert loaded.encode(corpus) == tok.encode(corpus)


def test_load_tokenizer_rejects_unknown_types(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"type": "Nope"}))
    with pytest.raises(ValueError, match="'Nope'"):
        load_tokenizer(path)
    path.write_text("not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_tokenizer(path)
