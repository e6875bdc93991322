"""Generation speed with and without the KV cache (batch 1, greedy), in one run.

    python benchmarks/bench_generate.py                 # GPT "small" shape (6 layers, d 384), vocab 65
    python benchmarks/bench_generate.py --preset baby

For each context length C it fills a prompt of C - N tokens and times the
generation of the last N tokens, so every timed step attends to about C
tokens. Without the cache each step re-runs the whole prefix; with it each
step runs one token against the stored keys and values. Medians of repeats.
"""
import argparse
import statistics
import time

import numpy as np

import minilm
from minilm.generate import generate
from minilm.models import GPT, GPTConfig


def tokens_per_second(model, prompt, n_new, use_cache, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        generate(model, prompt, n_new, greedy=True, use_cache=use_cache)
        times.append(time.perf_counter() - start)
    return n_new / statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--contexts", default="64,256")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", default=None)
    args = ap.parse_args()
    if args.backend:
        minilm.set_backend(args.backend)
    contexts = [int(c) for c in args.contexts.split(",")]
    cfg = GPTConfig.preset(args.preset, vocab_size=65, dropout=0.0, block_size=max(max(contexts), 64))
    model = GPT(cfg, generator=np.random.default_rng(0)).eval()
    rng = np.random.default_rng(1)
    print(f"GPT {args.preset}: {cfg.n_layer} layers, d {cfg.n_embd}, vocab 65, batch 1, greedy; "
          f"backend {minilm.get_backend()}; {args.new_tokens} new tokens, median of {args.repeats}")
    print(f"{'context':>8} {'no cache tok/s':>15} {'KV cache tok/s':>15} {'speedup':>8}")
    generate(model, rng.integers(0, 65, (1, 8)), 4)                     # warm-up (kernel compile)
    for c in contexts:
        prompt = rng.integers(0, 65, (1, c - args.new_tokens))
        slow = tokens_per_second(model, prompt, args.new_tokens, False, args.repeats)
        fast = tokens_per_second(model, prompt, args.new_tokens, True, args.repeats)
        print(f"{c:>8} {slow:>15.1f} {fast:>15.1f} {fast / slow:>7.1f}x")


if __name__ == "__main__":
    main()
