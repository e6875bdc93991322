"""Where the time of one training step goes: cProfile over GPT steps, grouped into a few categories.

    OPENBLAS_NUM_THREADS=1 python benchmarks/profile_step.py                 # baby GPT, numba backend
    OPENBLAS_NUM_THREADS=1 python benchmarks/profile_step.py --preset small --steps 3 --json out.json

It runs --warmup untimed AdamW steps of a GPT on random tokens (batch 12 x 64 for baby, 16 x 256 for
small), then profiles --steps more and sums each function's own time (cProfile's tottime) into the
categories below, in milliseconds per step. The categories match functions by file and name only, so
the same script also profiles older versions of minilm (that is how the chapter 09 chart's "before"
bars were made: this script run in a checkout of the older commit). cProfile adds its own overhead
to every Python call, so the totals are larger than an unprofiled step; compare categories, not totals.
"""
import argparse
import cProfile
import json
import os
import pstats
import re
import subprocess

import numpy as np

# (category, test on (file, function name)); the first match wins.
CATEGORIES = [
    ("matmul / linear, backward", lambda f, n: "ops_matmul" in f and n == "backward"),
    ("matmul / linear, forward", lambda f, n: "ops_matmul" in f and n == "forward"),
    ("attention kernels", lambda f, n: "attention" in f and "kernels" in f),
    ("attention, reference ops", lambda f, n: "ops_attention" in f),
    ("scatter-add (embedding, indexing)", lambda f, n: n in ("at", "reduceat", "scatter_add", "argsort")),
    ("GELU", lambda f, n: "gelu" in f.lower() or "gelu" in n.lower()),
    ("LayerNorm", lambda f, n: "layer_norm" in f or "layer_norm" in n.lower()),
    ("cross-entropy", lambda f, n: "cross_entropy" in f or "cross_entropy" in n.lower()),
    ("AdamW", lambda f, n: "optim" in f),
    ("copies (ascontiguousarray)", lambda f, n: n in ("ascontiguousarray", "copy")),
    ("autograd bookkeeping", lambda f, n: f.endswith(("tensor.py", "function.py", "module.py", "grad_mode.py"))),
]


def short_name(func):
    """cProfile's name of a function: "forward", "{method 'at' of 'numpy.ufunc' objects}" -> "at",
    "{built-in method numpy.ascontiguousarray}" -> "ascontiguousarray"."""
    found = re.search(r"method '([^']+)'", func) or re.search(r"built-in method (?:[\w]+\.)*(\w+)", func)
    return found.group(1) if found else func


def categorise(stats, steps):
    totals = {name: 0.0 for name, _ in CATEGORIES}
    totals["everything else"] = 0.0
    for (file, _, func), (_, _, tottime, _, _) in stats.stats.items():
        name = short_name(func)
        for category, test in CATEGORIES:
            if test(file, name):
                totals[category] += tottime
                break
        else:
            totals["everything else"] += tottime
    return {k: 1000 * v / steps for k, v in totals.items()}


def commit_of(package):
    """The git commit of the minilm checkout being profiled (or "unknown" outside a git checkout)."""
    folder = os.path.dirname(os.path.abspath(package.__file__))
    result = subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="baby", choices=["baby", "small"])
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the table to this JSON file")
    args = ap.parse_args()

    import minilm
    from minilm.models import GPT, GPTConfig
    from minilm.optim import AdamW
    minilm.set_backend(args.backend)
    batch = 12 if args.preset == "baby" else 16
    config = GPTConfig(vocab_size=65, dropout=0.0, **dict(
        baby=dict(n_layer=4, n_head=4, n_embd=128, block_size=64),
        small=dict(n_layer=6, n_head=6, n_embd=384, block_size=256))[args.preset])
    model = GPT(config, generator=np.random.default_rng(0))
    optimizer = AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(1)

    def step():
        x, y = (rng.integers(0, 65, (batch, config.block_size)) for _ in range(2))
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [step() for _ in range(args.steps)])
    table = categorise(pstats.Stats(profiler), args.steps)
    print(f"GPT {args.preset}, backend {minilm.get_backend()}, {args.steps} profiled steps: ms per step "
          f"(cProfile's own time per function, grouped)")
    for name, ms in sorted(table.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<36} {ms:8.1f}")
    print(f"  {'total':<36} {sum(table.values()):8.1f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"preset": args.preset, "backend": minilm.get_backend(), "steps": args.steps,
                       "minilm_commit": commit_of(minilm), "ms_per_step": table}, f, indent=1)


if __name__ == "__main__":
    main()
