"""Generation speed with and without the KV cache (batch 1, greedy), and PyTorch's, in one run.

    python benchmarks/bench_generate.py                 # GPT "small" shape (6 layers, d 384), vocab 65
    python benchmarks/bench_generate.py --preset baby --threads 1

For each context length C it fills a prompt of C - N tokens and times the
generation of the last N tokens, so every timed step attends to about C
tokens. Without the cache each step re-runs the whole prefix; with it each
step runs one token against the stored keys and values. If PyTorch is
installed (an optional oracle, never a dependency), the same weights run in a
PyTorch eager model with its own KV cache, greedy, after minilm's runs, and
the last column is minilm's cached speed over PyTorch's. Medians of repeats.
"""
import argparse
import os
import statistics
import sys
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


def torch_generator(model, threads):
    """A function (prompt, n_new) -> tokens/s running `model`'s weights in PyTorch eager with a KV cache."""
    import torch
    import torch.nn.functional as TF
    torch.set_num_threads(threads)
    cfg = model.config
    w = {name: torch.from_numpy(p.data.copy()) for name, p in model.named_parameters()}
    approximate = "tanh" if cfg.activation == "gelu_tanh" else "none"
    nh, c = cfg.n_head, cfg.n_embd

    def forward(ids, caches):
        b, t = ids.shape
        past = caches[0][0].shape[2] if caches[0] else 0
        x = w["wte.weight"][ids] + w["wpe.weight"][past:past + t]
        for i in range(cfg.n_layer):
            p = f"blocks.{i}."
            h = TF.layer_norm(x, (c,), w[p + "norm1.weight"], w[p + "norm1.bias"], cfg.layer_norm_epsilon)
            q, k, v = TF.linear(h, w[p + "self_attn.in_proj.weight"], w[p + "self_attn.in_proj.bias"]).split(c, 2)
            q, k, v = (z.view(b, t, nh, c // nh).transpose(1, 2) for z in (q, k, v))
            if caches[i]:
                k, v = torch.cat([caches[i][0], k], 2), torch.cat([caches[i][1], v], 2)
            caches[i] = (k, v)
            y = TF.scaled_dot_product_attention(q, k, v, is_causal=past == 0)
            x = x + TF.linear(y.transpose(1, 2).reshape(b, t, c), w[p + "self_attn.out_proj.weight"],
                              w[p + "self_attn.out_proj.bias"])
            h = TF.layer_norm(x, (c,), w[p + "norm2.weight"], w[p + "norm2.bias"], cfg.layer_norm_epsilon)
            h = TF.gelu(TF.linear(h, w[p + "ff.linear1.weight"], w[p + "ff.linear1.bias"]), approximate=approximate)
            x = x + TF.linear(h, w[p + "ff.linear2.weight"], w[p + "ff.linear2.bias"])
        x = TF.layer_norm(x, (c,), w["ln_f.weight"], w["ln_f.bias"], cfg.layer_norm_epsilon)
        return x[:, -1] @ w["wte.weight"].T

    def check_against(prompt):
        """Largest |logit difference| between this PyTorch forward and minilm's, on the prompt."""
        with torch.no_grad():
            theirs = forward(torch.from_numpy(prompt), [None] * cfg.n_layer).numpy()
        with minilm.no_grad():
            ours = model(prompt).numpy()[:, -1]
        return float(np.abs(theirs - ours).max())

    def tokens_per_second_torch(prompt, n_new, repeats):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            with torch.no_grad():
                caches = [None] * cfg.n_layer
                logits = forward(torch.from_numpy(prompt), caches)
                for _ in range(n_new - 1):
                    logits = forward(logits.argmax(-1, keepdim=True), caches)
            times.append(time.perf_counter() - start)
        return n_new / statistics.median(times)
    tokens_per_second_torch.check_against = check_against
    return tokens_per_second_torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--contexts", default="64,256")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", default=None)
    ap.add_argument("--threads", type=int, default=None, help="PyTorch intra-op threads (default: BLAS's, "
                    "from OPENBLAS_NUM_THREADS, else all cores)")
    args = ap.parse_args()
    threads = args.threads or int(os.environ.get("OPENBLAS_NUM_THREADS", os.cpu_count()))
    if args.backend:
        minilm.set_backend(args.backend)
    contexts = [int(c) for c in args.contexts.split(",")]
    cfg = GPTConfig.preset(args.preset, vocab_size=65, dropout=0.0, block_size=max(max(contexts), 64))
    model = GPT(cfg, generator=np.random.default_rng(0)).eval()
    rng = np.random.default_rng(1)
    print(f"GPT {args.preset}: {cfg.n_layer} layers, d {cfg.n_embd}, vocab 65, batch 1, greedy; "
          f"backend {minilm.get_backend()}; {args.new_tokens} new tokens, median of {args.repeats}")
    generate(model, rng.integers(0, 65, (1, 8)), 4)                     # warm-up (kernel compile)
    rows = []
    for c in contexts:
        prompt = rng.integers(0, 65, (1, c - args.new_tokens))
        slow = tokens_per_second(model, prompt, args.new_tokens, False, args.repeats)
        fast = tokens_per_second(model, prompt, args.new_tokens, True, args.repeats)
        rows.append((c, prompt, slow, fast))
    try:    # imported only now: torch's thread pool must not exist while minilm is timed
        torch_rate = torch_generator(model, threads)
    except ImportError:
        torch_rate = None
        print("(PyTorch not installed: no PyTorch column)", file=sys.stderr)
    if torch_rate is not None:
        print(f"(PyTorch's logits differ from minilm's by at most {torch_rate.check_against(rows[0][1]):.1e})")
    print(f"{'context':>8} {'no cache tok/s':>15} {'KV cache tok/s':>15} {'speedup':>8} "
          f"{'torch cache tok/s':>18} {'vs torch':>9}")
    for c, prompt, slow, fast in rows:
        line = f"{c:>8} {slow:>15.1f} {fast:>15.1f} {fast / slow:>7.1f}x"
        if torch_rate is not None:
            theirs = torch_rate(prompt, args.new_tokens, args.repeats)
            line += f" {theirs:>18.1f} {fast / theirs:>8.2f}x"
        print(line)


if __name__ == "__main__":
    main()
