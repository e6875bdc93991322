"""Feature extraction: run the frozen encoder once, keep the pooled vectors, train only the head.

The encoder never changes, so its output for a text never changes either: computing the
features once and training the head on the stored (N, H) array gives exactly the model that
training the head through the frozen encoder would give (dropout on the pooled vector
included), at the cost of one forward pass per text instead of one per text per epoch.
`cached_features` keeps them in a .npy file named by a hash of the texts and the model.
"""
import hashlib
import os
import time

import numpy as np

import minilm
from minilm.io.atomic import atomic_writer
from minilm.nn import functional as F
from minilm.optim.lr_scheduler import WarmupCosine
from minilm.tensor import Tensor
from minilm.transfer.finetune import History, make_optimizer, map_batches


def pooled_features(classifier, data, pad_id, batch_size=64):
    """(N, H) float32 pooled vectors of the frozen encoder (eval mode, no dropout)."""
    return map_batches(lambda m, ids, mask: m.features(ids, mask).numpy(), classifier, data, pad_id, batch_size)


def features_key(model_id, data):
    """A hash of the model's identity and the exact token ids: a cache entry never goes stale."""
    h = hashlib.sha256(str(model_id).encode())
    for row in data.ids:
        h.update(np.asarray(row, np.int64).tobytes() + b"|")
    return h.hexdigest()[:24]


def cached_features(classifier, data, pad_id, cache_dir=None, model_id="", batch_size=64):
    """pooled_features, read from / written to cache_dir/<hash>.npy when cache_dir is given."""
    if cache_dir is None:
        return pooled_features(classifier, data, pad_id, batch_size)
    path = os.path.join(cache_dir, f"features-{features_key(model_id, data)}.npy")
    if os.path.isfile(path):
        feats = np.load(path, allow_pickle=False)
        if feats.shape == (len(data.ids), classifier.encoder.config.hidden_size):
            return feats
    feats = pooled_features(classifier, data, pad_id, batch_size)
    os.makedirs(cache_dir, exist_ok=True)
    with atomic_writer(path) as f:
        np.save(f, feats, allow_pickle=False)
    return feats


def train_head(classifier, features, labels, config, val=None):
    """Train classifier.head (with classifier.dropout) on stored features; returns a History.

    val: (features, labels) held out from the training split, scored after every epoch.
    """
    rng = np.random.default_rng(config.seed)
    labels = np.asarray(labels, np.int64)
    steps_per_epoch = -(-len(labels) // config.batch_size)
    total = steps_per_epoch * config.epochs
    optimizer = make_optimizer(classifier, config)
    schedule = WarmupCosine(optimizer, warmup_steps=int(config.warmup_fraction * total), max_steps=total)
    steps, epochs, seconds = [], [], 0.0
    classifier.train()
    for epoch in range(config.epochs):
        start = time.perf_counter()
        order = rng.permutation(len(labels))
        for first in range(0, len(order), config.batch_size):
            rows = order[first:first + config.batch_size]
            logits = classifier.head(classifier.dropout(Tensor(features[rows])))
            loss = F.cross_entropy(logits, labels[rows])
            optimizer.zero_grad()
            loss.backward()
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            schedule.step()
            steps.append({"step": len(steps) + 1, "loss": float(loss.item()), "lr": lr})
        seconds += time.perf_counter() - start
        row = {"epoch": epoch + 1, "seconds": round(seconds, 3)}
        if val is not None:
            with minilm.no_grad():
                logits = classifier.head(Tensor(val[0]))
                row.update(val_accuracy=float((logits.numpy().argmax(1) == val[1]).mean()),
                           val_loss=float(F.cross_entropy(logits, np.asarray(val[1], np.int64)).item()))
        epochs.append(row)
    classifier.eval()
    return History(steps, epochs, seconds)
