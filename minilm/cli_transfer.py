"""The `minilm` commands that use a pretrained encoder: embed, finetune, classify.

    minilm embed sentences.txt --out embeddings.npy          one text per line -> (N, 384) float32
    minilm embed sentences.txt --out embeddings.jsonl        {"text": ..., "embedding": [...]} per line
    minilm finetune --method lora --task wn-noun-10 --out runs/lora [--seed 1] [--epochs 4] [--lr 1e-3]
    minilm finetune --method full --task my_labels.csv --out runs/mine
    minilm classify runs/lora "a large wild cat of Africa" "a tool for cutting wood"

The encoder is the installed all-MiniLM-L6-v2 wheel unless --model names a BERT folder.
Errors are reported by minilm.cli.main (one line, exit code 2).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from minilm.io.atomic import atomic_writer

METHOD_HELP = ("zeroshot (cosine to class descriptions), features (frozen encoder + linear head), "
               "partial (last --layers blocks + head), full (every weight), prompt (soft prompt + head), "
               "lora (rank --lora-rank adapters on query and value + head)")


def _positive(kind):
    def check(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0 or value != value:
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text!r}")
        return value
    check.__name__ = f"positive {kind.__name__}"
    return check


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def add_parsers(sub):
    from minilm.transfer.methods import METHODS                  # the parser is built before any model loads
    e = sub.add_parser("embed", help="sentence embeddings (all-MiniLM-L6-v2) of a file with one text per line")
    e.add_argument("file", help="text file, one text per line (blank lines are skipped)")
    e.add_argument("--out", required=True, help="output: .npy (an (N, H) float32 array) or .jsonl "
                                                "(one {\"text\", \"embedding\"} object per line)")
    e.add_argument("--model", default=None, help="a BERT folder (default: the installed all-MiniLM-L6-v2 wheel)")
    e.add_argument("--batch-size", type=_positive(int), default=32, help="texts per batch (default: 32)")
    f = sub.add_parser("finetune", help="train a classifier on a pretrained encoder (six transfer methods)")
    f.add_argument("--method", required=True, choices=METHODS, help=METHOD_HELP)
    f.add_argument("--task", required=True, help="'wn-noun-10' (built in) or a .csv / .jsonl file of text,label"
                                                 "[,split] rows (without split, 20%% of each class is the test set)")
    f.add_argument("--out", required=True, help="run folder: results.json, transfer.json, trained.safetensors")
    f.add_argument("--model", default=None, help="a BERT folder (default: the installed all-MiniLM-L6-v2 wheel)")
    f.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
    f.add_argument("--epochs", type=_positive(int), default=None, help="passes over the training split "
                                                                          "(default: the method's)")
    f.add_argument("--lr", type=_positive(float), default=None, help="learning rate of pretrained weights and "
                                                                     "adapters (default: the method's)")
    f.add_argument("--head-lr", type=_positive(float), default=None, help="learning rate of the head and the "
                                                                          "soft prompt (default: the method's)")
    f.add_argument("--batch-size", type=_positive(int), default=32, help="texts per step (default: 32)")
    f.add_argument("--layers", type=_positive(int), default=2, help="partial: blocks trained (default: 2)")
    f.add_argument("--prompt-tokens", type=_positive(int), default=20, help="prompt: soft tokens (default: 20)")
    f.add_argument("--lora-rank", type=_positive(int), default=8, help="lora: adapter rank (default: 8)")
    f.add_argument("--feature-cache", default=None, help="features: folder to keep the encoder's features in")
    f.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    c = sub.add_parser("classify", help="label texts with a run folder written by `minilm finetune`")
    c.add_argument("run", help="run folder written by `minilm finetune`")
    c.add_argument("texts", nargs="+", help="texts to classify")
    c.add_argument("--top", type=_positive(int), default=1, help="classes to show per text (default: 1)")


def read_lines(path):
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path} does not exist" if not p.exists() else f"{path} is not a file")
    texts = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"{path} holds no text (one text per line)")
    return texts


def cmd_embed(args):
    from minilm.transfer import SentenceEncoder
    out = Path(args.out)
    if out.suffix not in (".npy", ".jsonl"):
        raise ValueError(f"--out {out}: choose a .npy or a .jsonl file")
    texts = read_lines(args.file)
    encoder = SentenceEncoder.from_pretrained(args.model)
    emb = encoder.encode(texts, batch_size=args.batch_size, progress=None)
    with atomic_writer(out) as f:
        if out.suffix == ".npy":
            np.save(f, emb, allow_pickle=False)
        else:
            for text, row in zip(texts, emb):
                f.write((json.dumps({"text": text, "embedding": [round(float(v), 7) for v in row]}) + "\n").encode())
    print(f"{len(texts)} embeddings of size {emb.shape[1]} -> {out}", file=sys.stderr)
    return 0


def cmd_finetune(args):
    from minilm.transfer import FinetuneConfig, load_task, run_transfer
    from minilm.transfer.run import resolve_base
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise ValueError(f"--out {out} already holds files; choose another folder or add --overwrite")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    config = FinetuneConfig(method=args.method, seed=args.seed, epochs=args.epochs, lr=args.lr,
                            head_lr=args.head_lr, batch_size=args.batch_size, layers=args.layers,
                            prompt_tokens=args.prompt_tokens, lora_rank=args.lora_rank)
    resolve_base(args.model)                                   # a missing model fails before the task loads
    task = load_task(args.task)
    results = run_transfer(task, config, base=args.model, out_dir=out, cache_dir=args.feature_cache,
                           progress=sys.stderr.isatty(),
                           on_epoch=lambda row: print(json.dumps(row), file=sys.stderr, flush=True))
    print(f"{args.method}: test accuracy {results['test_accuracy']:.4f} on {results['test_examples']} "
          f"examples, {results['trainable_params']:,} trainable parameters, {results['seconds']:.0f} s -> "
          f"{out / 'results.json'}")
    return 0


def cmd_classify(args):
    from minilm.transfer import load_classifier
    run = load_classifier(args.run)
    probs = run.predict_proba(args.texts)
    top = min(args.top, len(run.classes))
    for text, p in zip(args.texts, probs):
        best = np.argsort(-p)[:top]
        labels = "  ".join(f"{run.classes[i]} ({p[i]:.2f})" for i in best)
        print(f"{labels}\t{text}")
    return 0


HANDLERS = {"embed": cmd_embed, "finetune": cmd_finetune, "classify": cmd_classify}
