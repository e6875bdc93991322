"""minilm.apps.hypernyms: WordNet's hypernym links, deterministic splits that keep their promises, a learning run."""
from pathlib import Path

import numpy as np
import pytest

from minilm.apps import hypernyms as H

DATA_NOUN = Path("/usr/share/wordnet/data.noun")
needs_wordnet = pytest.mark.skipif(not DATA_NOUN.is_file(),
                                   reason="WordNet is not installed (apt-get install wordnet-base)")

# A made-up taxonomy, so the split logic is tested without WordNet.
TOY = [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("b2", "b"), ("a", "root"), ("b", "root"),
       ("c1", "c"), ("c", "root"), ("root", "top")]


def test_two_step_facts_compose_links():
    two = H.two_step_facts(TOY)
    assert two[("a1", "root")] == ("a",)
    assert two[("a", "top")] == ("root",)
    assert ("a1", "top") not in two                   # three steps, not two
    assert len(two) == 6 + 3                          # six grandchildren of root, three of top


def test_splits_are_deterministic_and_keep_their_promises():
    edges = [(f"x{i}", f"y{i % 7}") for i in range(60)] + [(f"y{j}", f"z{j % 2}") for j in range(7)]
    s1, s2 = H.make_splits(edges, 0.2, 0.3, seed=0), H.make_splits(edges, 0.2, 0.3, seed=0)
    assert s1 == s2
    assert s1 != H.make_splits(edges, 0.2, 0.3, seed=1)
    train, held = set(s1["one_step_train"]), set(s1["one_step_held_out"])
    assert held and not train & held and train | held == set(edges)
    assert s1["two_step_test"] and s1["two_step_train"]
    train_subjects = {x for x, _, _ in s1["two_step_train"]}
    for x, y, z in s1["two_step_test"]:
        assert (x, y) in train and (y, z) in train    # both links trained ...
        assert x not in train_subjects                # ... and no two-step fact about x is
    for x, y, z in s1["two_step_control"]:
        assert (x, y) in held or (y, z) in held      # one of its links was never trained
    assert sorted(s1["two_step_test_sibling"] + s1["two_step_test_no_sibling"]) == sorted(s1["two_step_test"])


def test_training_sequences_and_chain_of_thought_format():
    s = H.make_splits(TOY, 0.0, 0.5, seed=0)
    vocab = H.Vocab(s["entities"])
    prompts, answers = H.training_sequences(s, vocab, chain_of_thought=True)
    words = [[vocab.itos[i] for i in p + a] for p, a in zip(prompts, answers)]
    assert ["a1", "is-a", "a"] in words
    two = [w for w in words if w[1] == "is-a-2"]
    assert two and all(len(w) == 4 for w in two)      # x is-a-2 y z
    with pytest.raises(ValueError):
        vocab.encode(["no-such-animal"])


@needs_wordnet
def test_wordnet_links_hand_checked():
    links = H.read_hypernym_links()
    word, parents = links[2084071]                    # dog.n.01
    assert word == "dog" and 2083346 in parents and 1317541 in parents   # canine, domestic_animal
    edges = H.subtree_edges(links, H.MAMMAL)
    assert ("canine", "carnivore") in edges
    assert 500 < len(edges) < 5000
    assert all(c != p for c, p in edges)


@needs_wordnet
def test_a_small_gpt_memorises_facts_and_cannot_know_held_out_ones():
    # the dog subtree (about 190 links), a few CPU seconds
    splits = H.make_splits(H.subtree_edges(H.read_hypernym_links(), 2084071), seed=0)
    model, vocab, history = H.train_fact_model(splits, steps=300, batch_size=64, n_embd=64, lr=3e-3)
    rows = H.evaluate(model, vocab, splits)
    assert rows["one_step_train"]["accuracy"] > 0.9
    assert rows["two_step_train"]["accuracy"] > 0.9
    assert rows["one_step_held_out"]["accuracy"] <= 0.5   # unseen facts cannot be recalled
    assert np.isclose(rows["chance"], 1 / len(splits["entities"]))
