"""A character-level GPT on Chinese: fortunes-zh (Tang and Song poems, sayings), ~1.0 M characters.

English needs ~100 characters; this corpus uses ~6,200 distinct ones, most of them rare. What
that changes, and how this script handles it:

- The vocabulary. Characters seen fewer than --min-count times in the training records share one
  [UNK] id (U+FFFD, the replacement character, which the corpus does not contain), and so do
  held-out characters never seen in training. The model learns to predict "some rare character"
  instead of spending a row on a character it saw once; the share of [UNK] in the held-out text
  (the out-of-vocabulary rate) is reported, because every loss here treats [UNK] as one symbol
  and is therefore a little optimistic where [UNK] is common.
- The embedding table. It is vocab x n_embd, and with tied weights it is also the output layer:
  at n_embd 128 about 5,000 rows are ~640 K parameters, as much as the 4 Transformer blocks, and
  the softmax over 5,000 classes at every position costs about as much as the blocks too.
- Baselines, on the same held-out text with the same [UNK] mapping: a unigram model (the
  training records' add-one smoothed character frequencies) and a bigram model with Witten-Bell
  interpolation (Witten and Bell 1991; Chen and Goodman 1998): P(c | p) = lambda_p P_ML(c | p) +
  (1 - lambda_p) P_uni(c), lambda_p = n(p) / (n(p) + t(p)), with t(p) the distinct successors of p.

Held out: every 10th record (poems, sayings and Debian's code of conduct alike).

    OMP_NUM_THREADS=1 python benchmarks/chinese_gpt.py              # ~6 CPU-minutes
    OMP_NUM_THREADS=1 python benchmarks/chinese_gpt.py --steps 20 --out /tmp/zh.json   # smoke test

Writes benchmarks/results/chinese_gpt.json and prints a table and samples.
"""
import argparse
import collections
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minilm import random as minilm_random  # noqa: E402
from minilm.data import ARBatcher, encode_to_array, fortunes_zh_records, iter_eval_batches  # noqa: E402
from minilm.generate import generate_text  # noqa: E402
from minilm.models import GPT, GPTConfig  # noqa: E402
from minilm.objectives import AutoregressiveLM  # noqa: E402
from minilm.tokenizers import CharTokenizer  # noqa: E402
from minilm.train import TrainConfig, Trainer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
UNK = "\ufffd"


def held_out_split(records, every=10):
    """Every `every`-th record is held out; both sides joined like load_corpus (a blank line between)."""
    train = [r for i, r in enumerate(records) if i % every != every - 1]
    val = [r for i, r in enumerate(records) if i % every == every - 1]
    return "\n\n".join(train) + "\n", "\n\n".join(val) + "\n"


def build_vocab(train_text, min_count):
    """The characters seen at least min_count times in training, plus [UNK]; and the counts."""
    counts = collections.Counter(train_text)
    if UNK in counts:
        raise ValueError("the corpus contains U+FFFD, the character chosen for [UNK]")
    kept = sorted(c for c, n in counts.items() if n >= min_count)
    return CharTokenizer(kept + [UNK]), counts


def map_unknown(text, tok):
    stoi = tok.stoi
    return "".join(c if c in stoi else UNK for c in text)


def unigram_bigram_nats(train_ids, val_ids, vocab_size):
    """Cross-entropy (nats per character) of the held-out ids under the two count models."""
    uni = np.bincount(train_ids, minlength=vocab_size) + 1.0              # add-one smoothing
    p_uni = uni / uni.sum()
    unigram = -np.log(p_uni[val_ids]).mean()
    pairs = collections.Counter(zip(train_ids[:-1].tolist(), train_ids[1:].tolist()))
    n_prev = np.bincount(train_ids[:-1], minlength=vocab_size).astype(np.float64)
    t_prev = np.zeros(vocab_size)
    for (p, _c) in pairs:
        t_prev[p] += 1
    prev, cur = val_ids[:-1], val_ids[1:]
    pair_n = np.array([pairs.get((p, c), 0) for p, c in zip(prev.tolist(), cur.tolist())], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        lam = np.where(n_prev[prev] > 0, n_prev[prev] / (n_prev[prev] + t_prev[prev]), 0.0)
        p_ml = np.where(n_prev[prev] > 0, pair_n / np.maximum(n_prev[prev], 1), 0.0)
    bigram = -np.log(lam * p_ml + (1 - lam) * p_uni[cur]).mean()
    return float(unigram), float(bigram)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min-count", type=int, default=2, help="rarer training characters become [UNK] (default 2)")
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--work", default=str(ROOT / "runs" / "chinese_gpt"))
    ap.add_argument("--out", default=str(RESULTS / "chinese_gpt.json"))
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    records = fortunes_zh_records()
    train_raw, val_raw = held_out_split(records)
    tok, counts = build_vocab(train_raw, args.min_count)
    val_chars = set(val_raw)
    vocab_story = {
        "distinct_chars_in_corpus": len(set(train_raw) | val_chars),
        "distinct_chars_in_training": len(counts),
        "seen_once_in_training": sum(1 for n in counts.values() if n == 1),
        "seen_under_5_times": sum(1 for n in counts.values() if n < 5),
        "share_of_training_text_in_the_1000_most_frequent": sum(n for _, n in counts.most_common(1000)) / len(train_raw),
        "vocab_size_with_unk": tok.vocab_size,
        "held_out_distinct_chars_unseen_in_training": len(val_chars - set(counts)),
        "held_out_unk_rate": sum(1 for c in val_raw if c not in tok.stoi) / len(val_raw),
    }
    train_text, val_text = map_unknown(train_raw, tok), map_unknown(val_raw, tok)
    train_ids = encode_to_array(tok.encode(train_text), tok.vocab_size)
    val_ids = encode_to_array(tok.encode(val_text), tok.vocab_size)
    unigram, bigram = unigram_bigram_nats(train_ids.astype(np.int64), val_ids.astype(np.int64), tok.vocab_size)
    print(f"{len(records):,} records: {len(train_raw):,} training and {len(val_raw):,} held-out characters; "
          f"{vocab_story['distinct_chars_in_training']:,} distinct training characters, "
          f"{vocab_story['seen_once_in_training']:,} seen once -> vocabulary {tok.vocab_size:,} with [UNK]; "
          f"held-out [UNK] rate {vocab_story['held_out_unk_rate']:.2%}", flush=True)

    config = GPTConfig(vocab_size=tok.vocab_size, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                       block_size=args.block, dropout=0.0)
    minilm_random.manual_seed(args.seed)
    model = GPT(config, generator=np.random.default_rng(args.seed))
    table = config.vocab_size * config.n_embd
    body = config.num_parameters(True) - table
    print(f"GPT: token table {table:,} parameters (also the output layer), blocks + LayerNorms {body:,}", flush=True)
    out = Path(args.work)
    shutil.rmtree(out, ignore_errors=True)
    cfg = TrainConfig(steps=args.steps, lr=args.lr, warmup_steps=min(50, args.steps // 10), weight_decay=0.1,
                      eval_interval=max(1, args.steps // 4), ckpt_interval=10 ** 9,
                      log_interval=max(1, args.steps // 10), out_dir=str(out))
    val = lambda: iter_eval_batches(val_ids, args.block, args.batch, 8)
    trainer = Trainer(model, AutoregressiveLM(), ARBatcher(train_ids, args.block, args.batch,
                                                           np.random.default_rng(args.seed + 1)),
                      val, cfg, progress_stream=sys.stdout)
    start = time.process_time()
    trainer.fit()
    train_seconds = time.process_time() - start
    full_val = AutoregressiveLM().evaluate(model, iter_eval_batches(val_ids, args.block, args.batch))["val_loss"]

    rng = np.random.default_rng(args.seed)
    samples = {p: generate_text(model, tok, p, 80, temperature=0.8, top_k=50, rng=rng, stop=("\n\n",))
               for p in ("春", "明月", "人生")}
    results = {"command": "python benchmarks/chinese_gpt.py", "args": vars(args) | {"work": None, "out": None},
               "records": len(records), "train_chars": len(train_raw), "val_chars": len(val_raw),
               "vocab": vocab_story, "parameters": {"token_table": table, "blocks": body,
                                                    "total": model.num_parameters(False)},
               "val_nats_per_char": {"unigram": unigram, "bigram": bigram, "gpt": full_val,
                                     "uniform_over_vocab": math.log(tok.vocab_size)},
               "train_cpu_seconds": round(train_seconds, 1), "tokens_seen": args.steps * args.batch * args.block,
               "samples": samples}
    print(f"\n{'model':<22} {'nats/char':>9} {'bits/char':>9}")
    for name, v in results["val_nats_per_char"].items():
        print(f"{name:<22} {v:>9.3f} {v / math.log(2):>9.3f}")
    print(f"(training {train_seconds:.0f} CPU s, {results['tokens_seen']:,} tokens)")
    for p, s in samples.items():
        print(f"\n[{p}]{s}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
