"""End-to-end training throughput: minilm on each kernel backend, and PyTorch eager, side by side.

    python benchmarks/bench_train.py                       # all configs, all backends, torch if installed
    python benchmarks/bench_train.py --configs baby --steps 10

Each (config, engine) pair runs in its own subprocess, so the peak resident
memory (ru_maxrss) belongs to that run alone. A run does --warmup untimed
steps (kernel compilation, allocator warm-up), then --steps timed AdamW
steps on random token batches; the table shows the median step time, tokens
per second, peak memory, and the ratio to the NumPy backend and to PyTorch.
Configs (from the fast-kernels issue):
  baby       GPT 4 layers, 4 heads, d 128, context 64, batch 12, vocab 65
  small      GPT 6 layers, 6 heads, d 384, context 256, batch 16, vocab 65
  bert-mini  BERT (MLM) 4 layers, 4 heads, d 256, context 128, batch 16, vocab 8000
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

CONFIGS = {
    "baby": dict(kind="gpt", n_layer=4, n_head=4, n_embd=128, block=64, batch=12, vocab=65),
    "small": dict(kind="gpt", n_layer=6, n_head=6, n_embd=384, block=256, batch=16, vocab=65),
    "bert-mini": dict(kind="bert", n_layer=4, n_head=4, n_embd=256, block=128, batch=16, vocab=8000),
}


def minilm_step_fn(cfg, backend):
    import minilm
    from minilm.models import BertConfig, BertForMaskedLM, GPT, GPTConfig
    minilm.set_backend(backend)
    if minilm.get_backend() != backend:
        raise RuntimeError(f"backend {backend} unavailable")
    rng = np.random.default_rng(0)
    b, t, v = cfg["batch"], cfg["block"], cfg["vocab"]
    if cfg["kind"] == "gpt":
        model = GPT(GPTConfig(vocab_size=v, n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"],
                              block_size=t, dropout=0.0), generator=rng)
        x, y = rng.integers(0, v, (b, t)), rng.integers(0, v, (b, t))
        loss_fn = lambda: model(x, targets=y)[1]
    else:
        model = BertForMaskedLM(BertConfig(vocab_size=v, hidden_size=cfg["n_embd"], num_hidden_layers=cfg["n_layer"],
                                           num_attention_heads=cfg["n_head"], intermediate_size=4 * cfg["n_embd"],
                                           max_position_embeddings=t, hidden_dropout_prob=0.0,
                                           attention_probs_dropout_prob=0.0), generator=rng)
        ids = rng.integers(5, v, (b, t))
        labels = np.where(rng.random((b, t)) < 0.15, ids, -100)
        ones, zeros = np.ones_like(ids), np.zeros_like(ids)
        loss_fn = lambda: model(ids, attention_mask=ones, token_type_ids=zeros, labels=labels)[1]
    opt = minilm.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def torch_step_fn(cfg):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.manual_seed(0)
    b, t, v, c, h = cfg["batch"], cfg["block"], cfg["vocab"], cfg["n_embd"], cfg["n_head"]
    causal = cfg["kind"] == "gpt"

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(c), nn.LayerNorm(c)
            self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
            self.fc, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

        def attn(self, x):
            q, k, vv = self.qkv(x).split(c, dim=2)
            q, k, vv = (z.view(b, t, h, c // h).transpose(1, 2) for z in (q, k, vv))
            return self.proj(F.scaled_dot_product_attention(q, k, vv, is_causal=causal).transpose(1, 2).reshape(b, t, c))

        def forward(self, x):
            if causal:      # GPT: pre-LN, tanh GELU
                x = x + self.attn(self.ln1(x))
                return x + self.fc2(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))
            x = self.ln1(x + self.attn(x))   # BERT: post-LN, erf GELU
            return self.ln2(x + self.fc2(F.gelu(self.fc(x))))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(v, c), nn.Embedding(t, c)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg["n_layer"]))
            self.ln = nn.LayerNorm(c)

        def forward(self, idx):
            x = self.wte(idx) + self.wpe(torch.arange(t))
            for blk in self.blocks:
                x = blk(x)
            return self.ln(x) @ self.wte.weight.T

    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, v, (b, t))
    y = torch.randint(0, v, (b, t))
    if not causal:
        y[torch.rand(b, t) > 0.15] = -100

    def step():
        loss = F.cross_entropy(model(x).reshape(-1, v), y.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def run_one(config, engine, steps, warmup, threads):
    cfg = CONFIGS[config]
    if engine == "torch":
        import torch
        torch.set_num_threads(threads)
        step = torch_step_fn(cfg)
    else:
        step = minilm_step_fn(cfg, engine)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    ms = statistics.median(times) * 1000
    tokens = cfg["batch"] * cfg["block"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ms": ms, "tok_s": tokens / (ms / 1000), "peak_mb": peak_mb}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="baby,small,bert-mini")
    ap.add_argument("--engines", default="numpy,numba,torch")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the engines this many times in alternation and report the median round "
                         "(on a shared machine, drift then hits every engine alike)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0], args.child[1], args.steps, args.warmup, args.threads)))
        return
    # Every engine gets the same number of BLAS threads (and torch the same intra-op threads);
    # Numba kernels run on one thread unless NUMBA_NUM_THREADS says otherwise (see minilm.backend).
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(args.threads)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}, {args.threads} BLAS/torch threads, median of {args.steps} steps"
          f"{f', median of {args.rounds} alternating rounds' if args.rounds > 1 else ''}")
    print(f"{'config':<10} {'engine':<7} {'ms/step':>9} {'tokens/s':>10} {'peak MB':>8} {'vs numpy':>9} {'vs torch':>9}")
    for config in args.configs.split(","):
        rounds = {}
        for _ in range(args.rounds):
            for engine in args.engines.split(","):
                cmd = [sys.executable, __file__, "--child", config, engine, "--steps", str(args.steps),
                       "--warmup", str(args.warmup), "--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    reason = (proc.stderr.strip().splitlines() or ["failed"])[-1]
                    print(f"{config:<10} {engine:<7} skipped: {reason[:80]}")
                    continue
                rounds.setdefault(engine, []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
        results = {engine: sorted(rs, key=lambda r: r["ms"])[len(rs) // 2] for engine, rs in rounds.items()}
        for engine, r in results.items():
            vs_numpy = f"{r['tok_s'] / results['numpy']['tok_s']:.2f}x" if "numpy" in results else "-"
            vs_torch = f"{r['tok_s'] / results['torch']['tok_s']:.2f}x" if "torch" in results else "-"
            print(f"{config:<10} {engine:<7} {r['ms']:>9.1f} {r['tok_s']:>10,.0f} {r['peak_mb']:>8.0f} "
                  f"{vs_numpy:>9} {vs_torch:>9}")


if __name__ == "__main__":
    main()
