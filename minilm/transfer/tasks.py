"""Labelled text tasks: the built-in WN-noun-10, or a user's CSV / JSON-lines file.

A task file holds one example per row with a `text` and a `label` (any string or number).
An optional `split` column (train / test) fixes the held-out test set; without it, 20% of each
class is held out with a fixed seed (0), the same whatever seed the training uses.

    text,label                       {"text": "a small dog", "label": "animal"}
    "a small dog",animal             {"text": "an oak", "label": "plant", "split": "test"}
"""
import csv
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from minilm.data.wn_noun10 import load_wn_noun10

BUILT_IN = ("wn-noun-10",)
FORMATS = (".csv", ".jsonl", ".json")


class Task(NamedTuple):
    name: str
    classes: list          # class names; labels index into it
    train_texts: list
    train_labels: np.ndarray
    test_texts: list
    test_labels: np.ndarray


def stratified_holdout(labels, fraction, seed=0):
    """(kept, held_out) index arrays: `fraction` of each class held out (at least one per class
    with two or more examples), chosen with `seed`."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    held = []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        n = int(round(fraction * len(rows)))
        if len(rows) >= 2:
            n = min(max(n, 1), len(rows) - 1)
        held.extend(rows[:n].tolist())
    held = np.sort(np.asarray(held, np.int64))
    kept = np.setdiff1d(np.arange(len(labels)), held)
    return kept, held


def _rows_from_file(path):
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"task file {path}: unknown format {suffix or '(no extension)'!r}; use .csv "
                         f"(columns text,label[,split]) or .jsonl (objects with text, label[, split])")
    with open(path, encoding="utf-8", newline="") as f:
        if suffix == ".csv":
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"text", "label"} <= set(reader.fieldnames):
                raise ValueError(f"task file {path}: the CSV header must name the columns 'text' and 'label', "
                                 f"got {reader.fieldnames}")
            return [(i + 2, row) for i, row in enumerate(reader)]
        rows = []
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"task file {path}, line {i + 1}: not JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"task file {path}, line {i + 1}: expected an object with 'text' and 'label'")
            rows.append((i + 1, row))
        return rows


def load_task_file(path, test_fraction=0.2):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} does not exist (or use --task {BUILT_IN[0]})")
    texts, labels, splits = [], [], []
    for line, row in _rows_from_file(path):
        text, label, split = row.get("text"), row.get("label"), row.get("split") or None
        if label is None or str(label).strip() == "":
            raise ValueError(f"task file {path}, line {line}: the label is missing")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"task file {path}, line {line}: the text is empty")
        if split not in (None, "train", "test"):
            raise ValueError(f"task file {path}, line {line}: split must be 'train' or 'test', got {split!r}")
        texts.append(text.strip())
        labels.append(str(label).strip())
        splits.append(split)
    if not texts:
        raise ValueError(f"task file {path} holds no examples")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"task file {path}: a classifier needs at least 2 labels, got {classes}")
    y = np.asarray([classes.index(label) for label in labels], np.int64)
    if any(s is not None for s in splits):
        if any(s is None for s in splits):
            raise ValueError(f"task file {path}: give a split for every row or for none")
        test = np.flatnonzero(np.asarray(splits) == "test")
        train = np.flatnonzero(np.asarray(splits) == "train")
    else:
        train, test = stratified_holdout(y, test_fraction, seed=0)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"task file {path}: both the train and the test split need examples")
    return Task(path.name, classes, [texts[i] for i in train], y[train], [texts[i] for i in test], y[test])


def load_task(spec):
    """'wn-noun-10' or the path of a task file -> Task."""
    if spec == "wn-noun-10":
        train, test = load_wn_noun10("train"), load_wn_noun10("test")
        return Task(spec, train.classes, train.texts, np.asarray(train.labels, np.int64),
                    test.texts, np.asarray(test.labels, np.int64))
    return load_task_file(spec)
