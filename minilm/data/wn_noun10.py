"""WN-noun-10: a labelled text-classification task made from WordNet noun definitions.

3,200 training and 800 test definitions (320 / 80 per class), each labelled with one of ten
WordNet lexicographer classes (noun.artifact, noun.person, noun.plant, ...). The data ships with
minilm as `wn_noun10.json` (WordNet 3.0 data, under the WordNet licence; the file's "recipe" field
says exactly how the definitions were drawn, so it can be rebuilt from Debian's wordnet-base).
Chance is 0.10. Choices (epochs, learning rates) belong on a part of the training split held out
for that, never on the test split.
"""
import json
from pathlib import Path
from typing import NamedTuple

FILE = Path(__file__).with_name("wn_noun10.json")


class LabelledTexts(NamedTuple):
    texts: list          # str definitions
    labels: list         # int class ids, indexes into `classes`
    classes: list        # the class names, e.g. "noun.artifact"


def load_wn_noun10(split="train"):
    """The "train" (3,200) or "test" (800) split as LabelledTexts(texts, labels, classes)."""
    if split not in ("train", "test"):
        raise ValueError(f"load_wn_noun10: split must be 'train' or 'test', got {split!r}")
    data = json.loads(FILE.read_text(encoding="utf-8"))
    rows = data[split]
    return LabelledTexts([r["text"] for r in rows], [int(r["label"]) for r in rows], list(data["classes"]))
