"""Every transfer method on WN-noun-10, several seeds: accuracy, trainable parameters, wall time.

    python benchmarks/bench_transfer.py                      # 6 methods x seeds 0 1 2 (about 70 min on 2 cores)
    python benchmarks/bench_transfer.py --methods lora --seeds 0
    python benchmarks/bench_transfer.py --table              # print the table and redraw the plot only
    python benchmarks/bench_transfer.py --timing             # CPU seconds per step of each method (~3 min)

Each finished run is appended to benchmarks/results/transfer_runs.jsonl as it ends (a long
sweep can be stopped and continued: a (method, seed) already there is skipped), then the table
(mean and spread over seeds) is printed and benchmarks/results/transfer.png drawn: test accuracy
against trainable parameters (log scale) and against wall time. 10% of the training split is
held out for choices; the test split is scored once per run, at its end.
Threads: pin them (OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / NUMBA_NUM_THREADS); the committed
runs used one thread per process with the three seeds side by side. On a shared machine the wall
time of a run says more about its neighbours than about the method, so the cost axis is CPU time:
--timing measures each method's median CPU seconds per training step (one thread) on real
batches and multiplies by the steps a run takes (results/transfer_timing.json).
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minilm.transfer import METHODS, FinetuneConfig, load_task, run_transfer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "transfer_runs.jsonl"
TIMING = ROOT / "benchmarks" / "results" / "transfer_timing.json"
PLOT = ROOT / "benchmarks" / "results" / "transfer.png"
FLOORS = {"zeroshot": 0.47, "features": 0.80, "partial": 0.85, "full": 0.87, "prompt": 0.84, "lora": 0.84}


def load_runs(path=RESULTS):
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measure_timing(task, steps=8, warmup=2):
    """{method: {step_cpu_s, steps, train_cpu_s}}: median CPU seconds of one training step x the steps of
    a default run. features: one encoder pass over the training texts (the cached part) + its head training."""
    import time
    from minilm.nn import functional as F
    from minilm.optim.clip import clip_grad_norm_
    from minilm.transfer import DEFAULTS, build_classifier
    from minilm.transfer.finetune import encode_texts, make_optimizer, pad_batch
    from minilm.transfer.features import pooled_features, train_head
    from minilm.transfer.run import load_base, resolve_base
    from minilm.transfer.tasks import stratified_holdout
    kept, _ = stratified_holdout(task.train_labels, 0.1, seed=0)
    n_train = len(kept)
    out = {"zeroshot": {"step_cpu_s": 0.0, "steps": 0, "train_cpu_s": 0.0}}
    for method in ("features", "partial", "full", "prompt", "lora"):
        encoder, tokenizer = load_base(resolve_base())
        config = FinetuneConfig(method=method)
        model = build_classifier(method, encoder, len(task.classes), config, np.random.default_rng(0))
        data = encode_texts(tokenizer, [task.train_texts[i] for i in kept], task.train_labels[kept], config.max_length)
        n_steps = -(-n_train // config.batch_size) * DEFAULTS[method]["epochs"]
        if method == "features":
            start = time.process_time()
            feats = pooled_features(model, data, tokenizer.pad_token_id)
            encode_cpu = time.process_time() - start
            start = time.process_time()
            train_head(model, feats, data.labels, config)
            head_cpu = time.process_time() - start
            out[method] = {"step_cpu_s": head_cpu / n_steps, "steps": n_steps, "encode_cpu_s": round(encode_cpu, 2),
                           "train_cpu_s": round(encode_cpu + head_cpu, 2)}
            continue
        optimizer = make_optimizer(model, config)
        params = [p for p in model.parameters() if p.requires_grad]
        rng = np.random.default_rng(0)
        times = []
        model.train()
        for i in range(warmup + steps):
            rows = rng.choice(len(data.ids), config.batch_size, replace=False)
            start = time.process_time()
            loss = F.cross_entropy(model(*pad_batch(data.ids, rows, tokenizer.pad_token_id)), data.labels[rows])
            optimizer.zero_grad()
            loss.backward()
            clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            if i >= warmup:
                times.append(time.process_time() - start)
        step = float(np.median(times))
        out[method] = {"step_cpu_s": round(step, 4), "steps": n_steps, "train_cpu_s": round(step * n_steps, 1)}
        print(f"    {method:<9} {step * 1000:7.0f} ms CPU per step x {n_steps} steps", flush=True)
    return out


def summarise(runs):
    """{method: {mean, std, n, trainable_params, seconds}} over seeds (seconds: CPU seconds from
    --timing when measured, else the runs' median wall time)."""
    timing = json.loads(TIMING.read_text()) if TIMING.is_file() else {}
    out = {}
    for method in METHODS:
        rows = [r for r in runs if r["method"] == method]
        if not rows:
            continue
        acc = np.array([r["test_accuracy"] for r in rows])
        out[method] = {"mean": float(acc.mean()), "std": float(acc.std()), "n": len(rows),
                       "seeds": [r["seed"] for r in rows], "trainable_params": rows[0]["trainable_params"],
                       "seconds": timing[method]["train_cpu_s"] if method in timing else
                       float(np.median([r["seconds"] for r in rows])),
                       "wall_seconds": float(np.median([r["seconds"] for r in rows])),
                       "val": float(np.mean([r["val_accuracy"] for r in rows if r["val_accuracy"] is not None] or [0]))}
    return out


def print_table(summary):
    print(f"{'method':<10} {'test acc (mean ± sd)':>22} {'seeds':>6} {'floor':>6} {'trainable':>12} "
          f"{'CPU s':>8} {'val acc':>8}")
    for method, s in summary.items():
        print(f"{method:<10} {s['mean']:>14.4f} ± {s['std']:.4f} {s['n']:>6} {FLOORS[method]:>6.2f} "
              f"{s['trainable_params']:>12,} {s['seconds']:>8.0f} {s['val']:>8.4f}")


def plot(summary, path=PLOT):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    # label positions in the right panel, where partial, LoRA and full sit close together
    offsets = {"full": (6, 4), "partial": (-46, -14), "lora": (6, -14), "prompt": (-20, -16)}
    for method, s in summary.items():
        x_params = max(s["trainable_params"], 1)
        for ax, x, offset in zip(axes, (x_params, max(s["seconds"], 0.1)), ((5, -12), offsets.get(method, (5, -12)))):
            ax.errorbar([x], [s["mean"]], yerr=[s["std"]], fmt="o", capsize=3)
            ax.annotate(method, (x, s["mean"]), textcoords="offset points", xytext=offset)
    axes[0].set(xscale="log", xlabel="trainable parameters (log; zero-shot drawn at 1)", ylabel="test accuracy")
    axes[1].set(xscale="log", xlabel="training CPU seconds, one thread (log; zero-shot drawn at 0.1)")
    fig.suptitle("WN-noun-10 on all-MiniLM-L6-v2: accuracy against cost (mean ± sd over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--table", action="store_true", help="only print the table and redraw the plot")
    ap.add_argument("--timing", action="store_true", help="measure CPU seconds per step of each method")
    ap.add_argument("--cache", default=str(ROOT / ".cache" / "features"), help="feature cache folder")
    args = ap.parse_args()
    if args.timing:
        TIMING.write_text(json.dumps(measure_timing(load_task("wn-noun-10")), indent=1) + "\n")
    elif not args.table:
        task = load_task("wn-noun-10")
        done = {(r["method"], r["seed"]) for r in load_runs()}
        for seed in args.seeds:
            for method in args.methods:
                if (method, seed) in done:
                    continue
                print(f"--- {method} seed {seed}", flush=True)
                res = run_transfer(task, FinetuneConfig(method=method, seed=seed), cache_dir=args.cache,
                                   on_epoch=lambda row: print("   ", row, flush=True))
                print(f"    test accuracy {res['test_accuracy']:.4f}  ({res['seconds']:.0f} s)", flush=True)
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                res["steps"] = [{"step": r["step"], "loss": round(r["loss"], 5), "lr": float(f"{r['lr']:.6g}")}
                                for r in res["steps"]]          # five digits are plenty for a curve
                with open(RESULTS, "a") as f:
                    f.write(json.dumps(res) + "\n")
    summary = summarise(load_runs())
    print_table(summary)
    if summary:
        plot(summary)
        (RESULTS.parent / "transfer_summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
