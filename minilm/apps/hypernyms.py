"""Can a small GPT chain facts it learned? "X is a Y" + "Y is a Z" -> "X is a Z", from WordNet.

WordNet's noun synsets point to their hypernyms ("@" pointers: dog -> canine,
canine -> carnivore). We take one subtree (by default everything under
"mammal"), name each synset by its first word (dropping names that two synsets
share), and make one token per synset, so a fact is three tokens:

    dog  is-a  canine                    one-step fact (a hypernym link)
    dog  is-a-2  carnivore               two-step fact (a grandparent)
    dog  is-a-2  canine carnivore        two-step with the step written out (chain of thought)

Splits, all drawn deterministically from a seed:

* one-step facts: a few percent are held out (never trained); the rest are trained.
* two-step facts, grouped by their subject X: the "train" subjects' two-step
  facts are trained (so the model learns what is-a-2 means); the "test"
  subjects' two-step facts never are, although both of their one-step links
  (X is-a Y, Y is-a Z) are. Composing those is the question.
* control: the test subjects' two-step facts one of whose links is held out.

Scoring is next-token ranking: after "X is-a" (or "X is-a-2") the model's most
likely entity token must be a true answer. Chance is 1 / (number of
entities); the stronger baseline is the most frequent answer of that relation
in training (a "guess the common parent" model), reported alongside.

Background: Allen-Zhu & Li 2023 ("Physics of language models 3.2: knowledge
manipulation") and Wang et al. 2024 ("Grokked transformers are implicit
reasoners") find that transformers compose two stored facts poorly without
writing the intermediate step, and well with it (Wei et al. 2022).
"""
from collections import Counter

import numpy as np

from minilm.apps import small_gpt
from minilm.data.wordnet import WORDNET_DIR, read_synsets

MAMMAL = 1861778        # mammal.n.01's offset in WordNet 3.0's data.noun
SPECIAL = ("<pad>", "is-a", "is-a-2")


def read_hypernym_links(root=WORDNET_DIR):
    """{offset: (first word, (hypernym offsets...))} for every noun synset in data.noun.

    The first word keeps WordNet's underscores ("sea_lion"), so a name is one token.
    """
    return {s.offset: (s.words[0].replace(" ", "_").lower(), s.hypernyms)
            for s in read_synsets(["noun"], root)}


def subtree_edges(links, root_offset=MAMMAL):
    """The (child, parent) name pairs of hypernym links inside root_offset's subtree, sorted.

    Synsets whose first word names another synset of the subtree too are left
    out (a token must mean one thing), with every link that touches them.
    """
    if root_offset not in links:
        raise ValueError(f"hypernyms: no noun synset at offset {root_offset}")
    children = {}
    for child, (_, parents) in links.items():
        for p in parents:
            children.setdefault(p, []).append(child)
    inside, stack = {root_offset}, [root_offset]
    while stack:                                                               # every descendant
        for c in children.get(stack.pop(), ()):
            if c not in inside:
                inside.add(c)
                stack.append(c)
    names = Counter(links[o][0] for o in inside)
    keep = {o for o in inside if names[links[o][0]] == 1}
    return sorted({(links[c][0], links[p][0]) for c in keep for p in links[c][1] if p in keep})


def two_step_facts(edges):
    """{(x, z): (y, ...)}: x is-a y and y is-a z, for all y; x != z."""
    parents = {}
    for c, p in edges:
        parents.setdefault(c, []).append(p)
    out = {}
    for x, ys in parents.items():
        for y in ys:
            for z in parents.get(y, ()):
                if z != x:
                    out.setdefault((x, z), []).append(y)
    return {k: tuple(sorted(v)) for k, v in sorted(out.items())}


def make_splits(edges, held_out_fraction=0.05, test_subject_fraction=0.2, seed=0):
    """Deterministic splits of one- and two-step facts (see the module docstring); a dict of sorted lists."""
    edges = sorted(set(edges))
    if not edges:
        raise ValueError("make_splits: no edges")
    rng = np.random.default_rng(seed)
    n_parents = Counter(c for c, _ in edges)
    # only a child's one and only link can be held out, so a held-out question has no trained answer
    held = {e for e, u in zip(edges, rng.random(len(edges))) if u < held_out_fraction and n_parents[e[0]] == 1}
    train_edges = [e for e in edges if e not in held]
    train_parent = {}
    for c, p in train_edges:
        train_parent.setdefault(c, set()).add(p)
    two = two_step_facts(edges)
    subjects = sorted({x for x, _ in two})
    test_subjects = {s for s, u in zip(subjects, rng.random(len(subjects))) if u < test_subject_fraction}
    splits = {"entities": sorted({n for e in edges for n in e}), "one_step_train": train_edges,
              "one_step_held_out": sorted(held), "two_step_train": [], "two_step_test": [],
              "two_step_control": []}
    for (x, z), ys in two.items():
        # a two-step fact is "composable" when some chain x -> y -> z has both links in training
        composable = any(y in train_parent.get(x, ()) and z in train_parent.get(y, ()) for y in ys)
        mid = next((y for y in ys if y in train_parent.get(x, ())), ys[0])
        if x in test_subjects:
            key = "two_step_test" if composable else "two_step_control"
            splits[key].append((x, mid, z))
        elif composable:
            splits["two_step_train"].append((x, mid, z))
    # A test fact x is-a-2 z can be answered without composing: a sibling x' (x' is-a y too)
    # has the trained fact x' is-a-2 z, and x's embedding, shaped by "x is-a y", resembles x''s.
    # Split the test facts by whether such a sibling shortcut exists.
    trained_two = {(x, z) for x, _, z in splits["two_step_train"]}
    kids = {}
    for c, p in train_edges:
        kids.setdefault(p, set()).add(c)
    shortcut = {x for x, y, z in splits["two_step_test"]                      # by subject: any one answer
                if any((k, z) in trained_two for k in kids.get(y, ()) if k != x)}
    splits["two_step_test_sibling"] = [f for f in splits["two_step_test"] if f[0] in shortcut]
    splits["two_step_test_no_sibling"] = [f for f in splits["two_step_test"] if f[0] not in shortcut]
    return splits


class Vocab:
    """One token per entity, plus <pad>, is-a and is-a-2."""

    def __init__(self, entities):
        self.itos = list(SPECIAL) + sorted(set(entities))
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.entity_ids = np.arange(len(SPECIAL), len(self.itos))

    def __len__(self):
        return len(self.itos)

    def encode(self, words):
        missing = [w for w in words if w not in self.stoi]
        if missing:
            raise ValueError(f"Vocab.encode: unknown words {missing[:5]}")
        return [self.stoi[w] for w in words]


def training_sequences(splits, vocab, chain_of_thought=False):
    """(prompts, answers) id lists: every trained one-step fact and every trained two-step fact.

    chain_of_thought: two-step answers are "y z" (the intermediate written first) instead of "z".
    """
    prompts, answers = [], []
    for x, y in splits["one_step_train"]:
        prompts.append(vocab.encode([x, "is-a"]))
        answers.append(vocab.encode([y]))
    for x, y, z in splits["two_step_train"]:
        prompts.append(vocab.encode([x, "is-a-2"]))
        answers.append(vocab.encode([y, z] if chain_of_thought else [z]))
    return prompts, answers


def train_fact_model(splits, *, steps=3000, batch_size=128, chain_of_thought=False, n_layer=2, n_head=4,
                     n_embd=128, lr=2e-3, seed=0, log_every=0, log=print):
    """Train a GPT on the training facts (sampled uniformly with replacement); returns (model, vocab, history)."""
    vocab = Vocab(splits["entities"])
    prompts, answers = training_sequences(splits, vocab, chain_of_thought)
    x_all, y_all = small_gpt.pack(prompts, answers, vocab.stoi["<pad>"])       # (N, T), (N, T)
    model = small_gpt.make_model(len(vocab), 4, n_layer, n_head, n_embd, seed=seed)

    def sample_batch(rng):
        rows = rng.integers(0, len(x_all), size=batch_size)
        return x_all[rows], y_all[rows]

    history = small_gpt.train(model, sample_batch, steps, lr=lr, weight_decay=0.0, seed=seed,
                              log_every=log_every, log=log)
    return model, vocab, history


def _truth(facts, two_step):
    """{subject: set of true answers} of one relation, from all the facts given."""
    out = {}
    for f in facts:
        out.setdefault(f[0], set()).add(f[2] if two_step else f[1])
    return out


def top1_accuracy(model, vocab, questions, truth, relation, chain_of_thought=False):
    """Fraction of subjects whose greedy answer (an entity token) is a true answer.

    With chain_of_thought (is-a-2 only) the model writes an intermediate entity
    first and its second token is the answer.
    """
    if not questions:
        return None
    subjects = sorted({q[0] for q in questions})
    prompts = np.array([vocab.encode([s, relation]) for s in subjects])       # (N, 2)
    n_new = 2 if chain_of_thought else 1
    out = small_gpt.greedy_answers(model, prompts, n_new)                      # (N, n_new)
    said = [vocab.itos[i] for i in out[:, -1]]
    return float(np.mean([w in truth[s] for s, w in zip(subjects, said)]))


def majority_baseline(train_answers, questions, truth):
    """Accuracy of always answering the most frequent training answer of the relation."""
    if not questions:
        return None
    guess = Counter(train_answers).most_common(1)[0][0]
    subjects = sorted({q[0] for q in questions})
    return float(np.mean([guess in truth[s] for s in subjects]))


def evaluate(model, vocab, splits, chain_of_thought=False):
    """Top-1 accuracy and the majority baseline on every split; chance = 1 / entities."""
    all_one = [(c, p) for c, p in splits["one_step_train"] + splits["one_step_held_out"]]
    one_truth = _truth(all_one, two_step=False)
    two_all = splits["two_step_train"] + splits["two_step_test"] + splits["two_step_control"]
    two_truth = _truth(two_all, two_step=True)
    one_train_answers = [p for _, p in splits["one_step_train"]]
    two_train_answers = [z for _, _, z in splits["two_step_train"]]
    rows = {}
    for name, qs, rel, truth, train_answers in (
            ("one_step_train", splits["one_step_train"], "is-a", one_truth, one_train_answers),
            ("one_step_held_out", splits["one_step_held_out"], "is-a", one_truth, one_train_answers),
            ("two_step_train", splits["two_step_train"], "is-a-2", two_truth, two_train_answers),
            ("two_step_test", splits["two_step_test"], "is-a-2", two_truth, two_train_answers),
            ("two_step_test_sibling", splits["two_step_test_sibling"], "is-a-2", two_truth, two_train_answers),
            ("two_step_test_no_sibling", splits["two_step_test_no_sibling"], "is-a-2", two_truth,
             two_train_answers),
            ("two_step_control", splits["two_step_control"], "is-a-2", two_truth, two_train_answers)):
        cot = chain_of_thought and rel == "is-a-2"
        rows[name] = {"questions": len({q[0] for q in qs}),
                      "accuracy": top1_accuracy(model, vocab, qs, truth, rel, cot),
                      "majority_baseline": majority_baseline(train_answers, qs, truth)}
    rows["chance"] = 1.0 / len(vocab.entity_ids)
    return rows


def main(argv=None):
    """python -m minilm.apps.hypernyms [--cot] [--root OFFSET]: train on one subtree's facts, print the scores."""
    import argparse
    p = argparse.ArgumentParser(description="Train a small GPT on WordNet 'X is-a Y' facts; test two-step chains.")
    p.add_argument("--root", type=int, default=MAMMAL, help="data.noun offset of the subtree's root")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--cot", action="store_true", help="two-step answers name the middle link first")
    args = p.parse_args(argv)
    splits = make_splits(subtree_edges(read_hypernym_links(), args.root))
    model, vocab, history = train_fact_model(splits, steps=args.steps, chain_of_thought=args.cot, log_every=500)
    rows = evaluate(model, vocab, splits, chain_of_thought=args.cot)
    print(f"chance {rows.pop('chance'):.4f}; {history['cpu_seconds']:.0f} CPU s of training")
    for name, row in rows.items():
        acc, maj = ("-" if v is None else f"{v:.3f}" for v in (row["accuracy"], row["majority_baseline"]))
        print(f"  {name:26s} {row['questions']:5d} questions  top-1 {acc}  majority baseline {maj}")


if __name__ == "__main__":
    main()
