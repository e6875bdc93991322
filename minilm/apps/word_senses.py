"""Word senses: which meaning of "bank" does a sentence use? A scored task from WordNet.

WordNet lists each word's senses (synsets) with a definition and, for many, an example sentence:

    bank (noun), sense 1: sloping land (especially the slope beside a body of water)
                          "they pulled the canoe up on the bank"
    bank (noun), sense 2: a financial institution that accepts deposits ...
                          "he cashed a check at the bank"

The task (a dictionary form of word-sense disambiguation, as in Lesk 1986): given the example
sentence of one sense, pick that sense among all of the word's senses, seeing only their
definitions. One item per (word, example) where the word has at least two senses and appears in
the example. With a sentence encoder e() this is

    predicted sense = argmax over the word's senses s of  cos(e(example), e(definition of s))

scored against two baselines: a random sense (expected accuracy: the mean of 1 / number of senses)
and WordNet's first listed sense (senses are ordered by how often they were tagged in a corpus,
so "always the first" is the classic strong baseline of word-sense disambiguation). A third
reference point is the simplified Lesk algorithm: the sense whose definition shares the most
words with the example, i.e. meaning by word overlap instead of by embedding.

Only the definitions are embedded, never the examples of the candidate senses: the example is part
of its own sense's gloss, and embedding the gloss whole would give the answer away.
"""
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minilm.data.errors import CorpusNotInstalledError
from minilm.data.wordnet import WORDNET_DIR, read_synsets

POS_FILES = {"noun": ("n", "index.noun"), "verb": ("v", "index.verb")}


@dataclass(frozen=True)
class SenseItem:
    lemma: str                       # the word, spaces for underscores ("give up")
    example: str                     # an example sentence of the gold sense
    candidates: tuple[int, ...]      # synset offsets of the word's senses, in WordNet's order
    gold: int                        # index into candidates of the sense the example belongs to


def sense_order(pos, root=WORDNET_DIR):
    """lemma -> synset offsets in WordNet's sense order, from index.noun / index.verb.

    A line of the index is: lemma pos synset_cnt p_cnt [ptr_symbol] * p_cnt sense_cnt tagsense_cnt
    synset_offset * synset_cnt (see wndb(5WN)); the offsets come in sense-number order.
    """
    path = Path(root) / POS_FILES[pos][1]
    if not path.is_file():
        raise CorpusNotInstalledError("wordnet", "wordnet-base", path)
    order = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):                                   # the license header
                continue
            fields = line.split()
            synset_cnt = int(fields[2])
            order[fields[0].replace("_", " ")] = tuple(int(x) for x in fields[-synset_cnt:])
    return order


def mentions(lemma, sentence):
    """Does the sentence use the lemma (as a whole word, allowing simple inflections: -s, -ed, -ing)?

    The stem drops a final "e" ("bake" -> "baked", "baking"). Irregular forms ("ran" for "run") are
    missed; an item is kept only when the word is visibly there, so the example is about it.
    """
    stem = lemma[:-1] if lemma.endswith("e") and len(lemma) > 3 else lemma
    pattern = r"\b" + re.escape(stem) + r"(?:e|s|es|d|ed|ing|" + re.escape(stem[-1]) + r"(?:ed|ing))?\b"
    return re.search(pattern, sentence, flags=re.IGNORECASE) is not None


def build_items(pos, root=WORDNET_DIR):
    """(items, definitions): the task's items for "noun" or "verb", and offset -> definition.

    Deterministic: items come in the order of the data file (synset offset), then the synset's words.
    """
    if pos not in POS_FILES:
        raise ValueError(f"word senses: pos must be one of {sorted(POS_FILES)}, got {pos!r}")
    order = sense_order(pos, root)
    synsets = list(read_synsets([pos], root))
    definitions = {s.offset: s.definition for s in synsets}
    items = []
    for s in synsets:
        for word in dict.fromkeys(w.lower() for w in s.words):              # unique, in order
            senses = order.get(word)
            if senses is None or len(senses) < 2 or s.offset not in senses:
                continue
            for example in s.examples:
                if mentions(word, example):
                    items.append(SenseItem(word, example, senses, senses.index(s.offset)))
    return items, definitions


def baselines(items):
    """Expected accuracy of a random sense, and accuracy of always choosing the first sense."""
    random = float(np.mean([1.0 / len(it.candidates) for it in items]))
    first = float(np.mean([it.gold == 0 for it in items]))
    return {"random": random, "first_sense": first}


_WORD = re.compile(r"[a-z]+")
_STOP_WORDS = frozenset("""a an the of to in on at by for with from and or but not no is are was were be been
being it its this that these those as into than then so such he she they we you i his her their our your
my me him them us who whom which what when where how all any some one ones something someone""".split())


def content_words(text, leave_out=()):
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP_WORDS and w not in leave_out}


def lesk_predict(items, definitions):
    """Simplified Lesk: the sense whose definition shares the most content words with the example.

    The word itself is left out (it says nothing about which sense); ties go to the earlier sense.
    """
    predictions = []
    for it in items:
        context = content_words(it.example, leave_out=set(it.lemma.split()))
        overlaps = [len(context & content_words(definitions[o])) for o in it.candidates]
        predictions.append(int(np.argmax(overlaps)))                        # argmax: the first of the best
    return np.array(predictions)


def predict(items, definitions, embed):
    """Predicted candidate index per item: the sense whose definition is most similar to the example.

    embed(list of texts) -> (N, H) unit vectors; every distinct text is embedded once.
    """
    texts = list(dict.fromkeys([it.example for it in items] +
                               [definitions[o] for it in items for o in it.candidates]))
    row = {t: i for i, t in enumerate(texts)}
    vectors = embed(texts)                                                  # (N, H)
    predictions = []
    for it in items:
        e = vectors[row[it.example]]                                        # (H,)
        d = vectors[[row[definitions[o]] for o in it.candidates]]           # (S, H)
        predictions.append(int(np.argmax(d @ e)))                          # cosine: the vectors are unit
    return np.array(predictions)


def sample_items(items, limit=None, seed=0):
    """A seeded random sample of `limit` items, in their original order (all of them if limit is None)."""
    if limit is None or limit >= len(items):
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


def evaluate(pos, embed, root=WORDNET_DIR, limit=None, seed=0):
    """Accuracy of the encoder, of both baselines and of simplified Lesk on one part of speech.

    embed: None to score only the baselines and Lesk. limit: score a seeded random sample of this many items (None: all of them).
    """
    items, definitions = build_items(pos, root)
    items = sample_items(items, limit, seed)
    gold = np.array([it.gold for it in items])
    senses = np.array([len(it.candidates) for it in items])
    encoder = predict(items, definitions, embed) if embed is not None else None
    return {"pos": pos, "items": len(items), "lemmas": len({it.lemma for it in items}),
            "mean_senses": float(senses.mean()), **baselines(items),
            "lesk": float((lesk_predict(items, definitions) == gold).mean()),
            "encoder": None if encoder is None else float((encoder == gold).mean())}
