"""Training a SequenceClassifier on labelled texts: the loop every trained method shares.

Each step: a shuffled batch of texts, padded to its longest, goes through the classifier;
the loss is the mean cross-entropy of the labels; AdamW updates only the parameters with
requires_grad. Two learning rates, as is usual when a fresh head sits on a pretrained body:
the head (and a soft prompt) starts from nothing and takes `head_lr`; pretrained weights and
adapters take `lr`. Both follow the same warm-up then cosine decay (minilm.optim.WarmupCosine).
"""
import dataclasses
import time
from typing import NamedTuple

import numpy as np

import minilm
from minilm.nn import functional as F
from minilm.optim import AdamW
from minilm.optim.clip import clip_grad_norm_
from minilm.optim.lr_scheduler import WarmupCosine
from minilm.optim.param_groups import is_no_decay
from minilm.progress import ProgressBar
from minilm.tensor import Tensor
from minilm.tokenizers.bert_inputs import pad_rows
from minilm.transfer.methods import check_method

# Per method: epochs, lr (pretrained weights / adapters), head_lr (head and soft prompt).
# Chosen on a held-out 10% of WN-noun-10's training split (benchmarks/bench_transfer.py --tune),
# never on its test split.
DEFAULTS = {
    "zeroshot": dict(epochs=0, lr=0.0, head_lr=0.0),
    "features": dict(epochs=30, lr=0.0, head_lr=3e-3),
    "partial": dict(epochs=4, lr=2e-4, head_lr=2e-3),
    "full": dict(epochs=3, lr=1e-4, head_lr=2e-3),
    "prompt": dict(epochs=6, lr=0.0, head_lr=3e-3),
    "lora": dict(epochs=4, lr=1e-3, head_lr=2e-3),
}


@dataclasses.dataclass
class FinetuneConfig:
    method: str = "full"
    epochs: int = None               # None: DEFAULTS[method]
    lr: float = None
    head_lr: float = None
    batch_size: int = 32
    max_length: int = 64             # tokens per text, [CLS] and [SEP] included
    warmup_fraction: float = 0.1     # of all steps
    weight_decay: float = 0.01       # on matrices only (minilm.optim.param_groups.is_no_decay)
    grad_clip: float = 1.0
    dropout: float = 0.1             # on the pooled vector before the head
    seed: int = 0
    layers: int = 2                  # partial: how many of the last blocks train
    prompt_tokens: int = 20          # prompt: soft-prompt length
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple = ("query", "value")

    def __post_init__(self):
        check_method(self.method)
        for key, value in DEFAULTS[self.method].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.lora_targets = tuple(self.lora_targets)
        checks = {"epochs": self.epochs >= (0 if self.method == "zeroshot" else 1), "lr": self.lr >= 0, "head_lr": self.head_lr >= 0,
                  "batch_size": self.batch_size >= 1, "max_length": self.max_length >= 3,
                  "warmup_fraction": 0 <= self.warmup_fraction < 1, "weight_decay": self.weight_decay >= 0,
                  "grad_clip": self.grad_clip >= 0, "dropout": 0 <= self.dropout < 1,
                  "layers": self.layers >= 1, "prompt_tokens": self.prompt_tokens >= 1,
                  "lora_rank": self.lora_rank >= 1, "lora_alpha": self.lora_alpha > 0}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"FinetuneConfig: out of range: " + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad))


class Encoded(NamedTuple):
    ids: list         # one list of token ids per text ([CLS] ... [SEP], truncated)
    labels: np.ndarray


def encode_texts(tokenizer, texts, labels, max_length):
    """Tokenize once; batches are padded later to their own longest text."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, return_arrays=False)
    return Encoded(enc["input_ids"], np.asarray(labels, np.int64))


def pad_batch(ids, rows, pad_id):
    """(input_ids, attention_mask), both (B, T) int64, for the texts `rows`, padded to the longest."""
    chosen = [ids[i] for i in rows]
    length = max(len(r) for r in chosen)
    input_ids = np.asarray(pad_rows(chosen, length, pad_id), np.int64)
    mask = np.asarray(pad_rows([[1] * len(r) for r in chosen], length, 0), np.int64)
    return input_ids, mask


def map_batches(fn, model, data, pad_id, batch_size=64):
    """Stack fn(model, input_ids, mask) -> (B, K) array over all texts, in eval mode without a
    graph, the texts taken shortest first (less padding) and the rows given back in data's order."""
    was_training = model.training
    model.eval()
    order = np.argsort([len(r) for r in data.ids], kind="stable")
    out = None
    with minilm.no_grad():
        for first in range(0, len(order), batch_size):
            rows = order[first:first + batch_size]
            values = fn(model, *pad_batch(data.ids, rows, pad_id))
            if out is None:
                out = np.zeros((len(order), values.shape[1]), np.float32)
            out[rows] = values
    model.train(was_training)
    return out


def predict_logits(model, data, pad_id, batch_size=64):
    """(N, C) float32 logits in eval mode, texts taken shortest first (less padding)."""
    return map_batches(lambda m, ids, mask: m(ids, mask).numpy(), model, data, pad_id, batch_size)


def accuracy(logits, labels):
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())


class History(NamedTuple):
    steps: list       # per optimizer step: {"step", "loss", "lr"}
    epochs: list      # per epoch: {"epoch", "val_accuracy", "val_loss", "seconds"}
    seconds: float    # training time, evaluation excluded


def make_optimizer(model, config):
    """AdamW with the head and soft prompt at head_lr, the rest at lr; no decay on vectors and norms."""
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        fresh = name.startswith(("head.", "prompt."))
        decay = 0.0 if (is_no_decay(name, p) or name.startswith("prompt.")) else config.weight_decay
        key = (fresh, decay)
        groups.setdefault(key, {"params": [], "lr": config.head_lr if fresh else config.lr,
                                "weight_decay": decay})["params"].append(p)
    if not groups:
        raise ValueError(f"{config.method}: nothing to train (no parameter requires a gradient)")
    return AdamW(list(groups.values()), lr=config.lr or config.head_lr)


def train_classifier(model, train, config, pad_id, val=None, progress=None, on_epoch=None):
    """Train `model` (a SequenceClassifier) on `train` (Encoded) for config.epochs; returns a History.

    val: Encoded texts held out from the training split, scored after every epoch.
    progress: True for a progress bar on stderr.
    """
    rng = np.random.default_rng(config.seed)
    steps_per_epoch = -(-len(train.ids) // config.batch_size)
    total = steps_per_epoch * config.epochs
    optimizer = make_optimizer(model, config)
    schedule = WarmupCosine(optimizer, warmup_steps=int(config.warmup_fraction * total), max_steps=total)
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    bar = ProgressBar(total, every=10) if progress else None
    steps, epochs, seconds = [], [], 0.0
    model.train()
    for epoch in range(config.epochs):
        start = time.perf_counter()
        order = rng.permutation(len(train.ids))
        for first in range(0, len(order), config.batch_size):
            rows = order[first:first + config.batch_size]
            logits = model(*pad_batch(train.ids, rows, pad_id))
            loss = F.cross_entropy(logits, train.labels[rows])
            optimizer.zero_grad()
            loss.backward()
            if config.grad_clip:
                clip_grad_norm_(params, config.grad_clip)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            schedule.step()
            steps.append({"step": len(steps) + 1, "loss": float(loss.item()), "lr": lr})
            if bar is not None:
                bar.update(len(steps), loss=steps[-1]["loss"])
        seconds += time.perf_counter() - start
        row = {"epoch": epoch + 1, "seconds": round(seconds, 2)}
        if val is not None and len(val.ids):
            logits = predict_logits(model, val, pad_id)
            row.update(val_accuracy=accuracy(logits, val.labels),
                       val_loss=float(F.cross_entropy(Tensor(logits), val.labels).item()))
        epochs.append(row)
        if on_epoch is not None:
            on_epoch(row)
    if bar is not None:
        bar.close()
    model.eval()
    return History(steps, epochs, seconds)
