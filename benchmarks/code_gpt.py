"""Code completion with a GPT trained on the standard library: byte-level BPE against characters.

Two GPTs with the same body (layers, width, heads, context) and the same recipe (steps, batch,
schedule, seed) learn the standard library's Python sources: one reads characters, one reads
byte-level BPE tokens (Sennrich et al. 2016; byte-level as in GPT-2) trained here on the same
training text. Files are held out by a hash of their path (minilm.apps.code_completion), so
validation text and completion prompts come from files neither model saw.

Scores:
- validation bits per character on held-out files. For BPE: the total nats over the validation
  tokens / the number of characters they cover / ln 2, so the two tokenizations are comparable.
- the ast.parse rate of sampled completions (the scoring of Chen et al. 2021, Codex, with a syntax
  check for unit tests): for each of 200 held-out functions the model sees the last 128 positions
  of the file up to the end of the docstring and writes 128 more; the body is cut where the function
  ends (code_completion.cut_completion) and def + docstring + body goes to ast.parse. At
  temperatures 0.5, 0.8 and 1.0; batched generation with the KV cache (128 + 128 = the context).
  Same positions for both models: the BPE model sees and writes about 3x more text.

    OMP_NUM_THREADS=1 python benchmarks/code_gpt.py                # ~30 CPU-minutes (2,000 steps per model)
    OMP_NUM_THREADS=1 python benchmarks/code_gpt.py --tiny --out /tmp/code_gpt.json   # smoke test, ~1 min

Writes benchmarks/results/code_gpt.json, prints a table and a few sample completions.
"""
import argparse
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
from minilm.apps.code_completion import extract_prompts, score_continuation, split_files, stdlib_sources  # noqa: E402
from minilm.autograd.grad_mode import no_grad  # noqa: E402
from minilm.data import ARBatcher, encode_to_array, iter_eval_batches  # noqa: E402
from minilm.generate import generate  # noqa: E402
from minilm.models import GPT, GPTConfig  # noqa: E402
from minilm.objectives import AutoregressiveLM  # noqa: E402
from minilm.tokenizers import ByteLevelBPE, CharTokenizer  # noqa: E402
from minilm.train import TrainConfig, Trainer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BIG_FILE = 200_000    # held-out files larger than this are data, not code (pydoc_data/topics.py)


def take(files, max_chars, skip_larger=None):
    """Whole files, in the split's (hashed) order, joined like the stdlib corpus, up to max_chars."""
    docs, total = [], 0
    for _, text in files:
        if skip_larger and len(text) > skip_larger:
            continue
        docs.append(text.rstrip("\n"))
        total += len(docs[-1]) + 2
        if total >= max_chars:
            break
    return "\n\n".join(docs) + "\n"


def choose_prompts(held_out, n, max_prompt_chars, seed):
    """n held-out functions whose def + docstring fit the char model's prompt window (and that
    have at least 600 characters of file before them, so every window is full)."""
    candidates = [p for path, text in held_out for p in extract_prompts(text, path)
                  if len(p.text) <= max_prompt_chars and p.start >= 600]
    if len(candidates) < n:
        raise SystemExit(f"only {len(candidates)} held-out functions fit; ask for fewer prompts")
    pick = np.random.default_rng(seed).choice(len(candidates), size=n, replace=False)
    return [candidates[i] for i in sorted(pick)], len(candidates)


def prompt_windows(prompts, sources, tokenize, positions):
    """(n, positions) ids: the last `positions` tokens of each file up to the end of the docstring,
    without the docstring's final newline (see score_continuation)."""
    rows = []
    for p in prompts:
        prefix = sources[p.path][: p.start + len(p.text) - 1]
        ids = tokenize(prefix[-8 * positions:])[-positions:]        # 8 chars per position is plenty
        if len(ids) != positions:
            raise SystemExit(f"{p.path}:{p.name}: only {len(ids)} tokens before the body")
        rows.append(ids)
    return np.array(rows, dtype=np.int64)


def train(name, tok, train_ids, val_ids, args):
    config = GPTConfig(vocab_size=tok.vocab_size, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                       block_size=args.block, dropout=0.0)
    minilm_random.manual_seed(args.seed)
    model = GPT(config, generator=np.random.default_rng(args.seed))
    batcher = ARBatcher(train_ids, args.block, args.batch, np.random.default_rng(args.seed + 1))
    val = lambda: iter_eval_batches(val_ids, args.block, args.batch, 4)
    out = Path(args.work) / name
    shutil.rmtree(out, ignore_errors=True)
    cfg = TrainConfig(steps=args.steps, lr=args.lr, warmup_steps=min(50, args.steps // 10), weight_decay=0.1,
                      eval_interval=max(1, args.steps // 4), ckpt_interval=10 ** 9,
                      log_interval=max(1, args.steps // 10), out_dir=str(out))
    trainer = Trainer(model, AutoregressiveLM(), batcher, val, cfg, progress_stream=sys.stdout)
    start = time.process_time()
    history = trainer.fit()
    seconds = time.process_time() - start
    train_losses = [r["train_loss"] for r in history if "train_loss" in r]
    return model, {"config": config.to_dict(), "parameters": model.num_parameters(False),
                   "parameters_without_token_table": config.num_parameters(True) - config.vocab_size * config.n_embd,
                   "token_table": config.vocab_size * config.n_embd,
                   "train_cpu_seconds": round(seconds, 1), "final_train_loss": train_losses[-1] if train_losses else None,
                   "tokens_seen": args.steps * args.batch * args.block}


@no_grad()
def bits_per_char(model, val_ids, decode, block, batch):
    """Total nats over every scored validation token / the characters those tokens spell / ln 2."""
    model.eval()
    total, scored = 0.0, 0
    for x, y in iter_eval_batches(val_ids, block, batch):
        _, loss = model(x, targets=y)
        total += float(loss.item()) * y.size
        scored += y.size
    chars = len(decode(val_ids[1:1 + scored].tolist()))
    return {"nats_per_token": total / scored, "bits_per_char": total / chars / math.log(2),
            "scored_tokens": scored, "scored_chars": chars}


def complete(model, windows, decode, temperature, new_tokens, seed, batch=50):
    """Sampled continuations (text) of each window row, in batches sharing one prompt length."""
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(0, len(windows), batch):
        rows = windows[i:i + batch]
        out = generate(model, rows, new_tokens, temperature=temperature, rng=rng)
        texts += [decode(r[rows.shape[1]:].tolist()) for r in out]
    return texts


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-chars", type=int, default=3_000_000)
    ap.add_argument("--val-chars", type=int, default=300_000)
    ap.add_argument("--bpe-vocab", type=int, default=2048)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--prompt-positions", type=int, default=128)
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 0.8, 1.0])
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--work", default=str(ROOT / "runs" / "code_gpt"))
    ap.add_argument("--out", default=str(RESULTS / "code_gpt.json"))
    ap.add_argument("--tiny", action="store_true", help="a smoke test: small data, few steps, 20 prompts")
    args = ap.parse_args(argv)
    if args.tiny:
        args.train_chars, args.val_chars, args.steps, args.prompts, args.bpe_vocab = 300_000, 30_000, 20, 20, 512
    return args


def main(argv=None):
    args = parse_args(argv)
    files = stdlib_sources()
    train_files, held_out = split_files(files, val_fraction=0.1)
    sources = dict(held_out)
    train_text = take(train_files, args.train_chars)
    val_text = take(held_out, args.val_chars, skip_larger=BIG_FILE)
    print(f"{len(files)} stdlib files: {len(train_files)} for training, {len(held_out)} held out; "
          f"training text {len(train_text):,} chars, validation {len(val_text):,} chars", flush=True)

    start = time.process_time()
    bpe = ByteLevelBPE.train(train_text, args.bpe_vocab)
    bpe_seconds = time.process_time() - start
    # The char alphabet covers the held-out files too (only which characters exist, no statistics):
    # the prompts and validation text must be encodable. Rows of characters never seen in training
    # keep their random initial weights.
    char = CharTokenizer.from_text(train_text + "".join(t for _, t in held_out))
    toks = {"char": char, "bpe": bpe}
    ids = {n: (encode_to_array(t.encode(train_text), t.vocab_size), encode_to_array(t.encode(val_text), t.vocab_size))
           for n, t in toks.items()}
    chars_per_token = {n: len(val_text) / len(ids[n][1]) for n in toks}
    print(f"BPE: {bpe.vocab_size} tokens, trained in {bpe_seconds:.1f} CPU s; held-out characters per token: "
          f"char 1.00, BPE {chars_per_token['bpe']:.2f}", flush=True)

    prompts, n_candidates = choose_prompts(held_out, args.prompts, args.prompt_positions, args.seed)
    results = {"command": "python benchmarks/code_gpt.py" + (" --tiny" if args.tiny else ""),
               "args": {k: v for k, v in vars(args).items() if k not in ("work", "out")},
               "files": {"total": len(files), "train": len(train_files), "held_out": len(held_out)},
               "train_chars": len(train_text), "val_chars": len(val_text),
               "bpe": {"vocab_size": bpe.vocab_size, "train_cpu_seconds": round(bpe_seconds, 2)},
               "chars_per_token": chars_per_token, "prompt_candidates": n_candidates, "models": {}}
    for name, tok in toks.items():
        print(f"\n== {name} GPT ==", flush=True)
        model, info = train(name, tok, *ids[name], args)
        info.update(bits_per_char(model, ids[name][1], tok.decode, args.block, args.batch))
        windows = prompt_windows(prompts, sources, tok.encode, args.prompt_positions)
        new_tokens = args.block - args.prompt_positions
        info["completions"] = {}
        start = time.process_time()
        for temp in args.temperatures:
            texts = complete(model, windows, tok.decode, temp, new_tokens, args.seed + int(temp * 100))
            scored = [score_continuation(p, t) for p, t in zip(prompts, texts)]
            info["completions"][str(temp)] = {
                "parse_rate": sum(ok for _, ok in scored) / len(scored),
                "closed_rate": sum(c.closed for c, _ in scored) / len(scored),
                "mean_body_chars": float(np.mean([len(c.body) for c, _ in scored])),
                "samples": [{"prompt": p.text, "body": c.body, "parses": ok, "closed": c.closed}
                            for p, (c, ok) in list(zip(prompts, scored))[:3]]}
            print(f"T={temp}: parse rate {info['completions'][str(temp)]['parse_rate']:.3f}", flush=True)
        info["generation_cpu_seconds"] = round(time.process_time() - start, 1)
        results["models"][name] = info

    print_table(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {args.out}")


def print_table(results):
    temps = list(next(iter(results["models"].values()))["completions"])
    print(f"\n{'model':<6} {'vocab':>6} {'params':>9} {'chars/tok':>9} {'val bpc':>8} {'train CPU s':>11}  "
          + "  ".join(f"parse@T={t}" for t in temps))
    for name, m in results["models"].items():
        print(f"{name:<6} {m['config']['vocab_size']:>6} {m['parameters']:>9,} {results['chars_per_token'][name]:>9.2f} "
              f"{m['bits_per_char']:>8.3f} {m['train_cpu_seconds']:>11.0f}  "
              + "  ".join(f"{m['completions'][t]['parse_rate']:>11.3f}" for t in temps))
    for name, m in results["models"].items():
        s = m["completions"][temps[len(temps) // 2]]["samples"]
        for sample in s[:2]:
            print(f"\n--- {name}, T={temps[len(temps) // 2]}, parses={sample['parses']} ---\n"
                  f"{sample['prompt']}{sample['body']}", end="")


if __name__ == "__main__":
    main()
