"""Memorisation and its defence: canary exposure without DP and with DP-SGD at two noise levels.

The Secret Sharer experiment (Carlini et al. 2019) on pydoc: 12 canaries "<name>'s PIN is ddddd"
(5 random digits, a different name each), 3 of them planted 1, 4, 16 and 64 times into the
training text. The text is cut into windows of 33 characters, the training examples; each copy
overwrites a random stretch of its own window (minilm/privacy/canaries.py), so a canary planted
n times is in exactly n of the N examples. Three arms train the same GPT from the same
initialisation on the same Poisson-sampled lots (sample rate q = 256 / N, 1,200 steps, Adam with
lr 3e-3, warm-up 50 steps, cosine to 3e-4):

    no DP         the lot's mean gradient
    DP sigma=0.6  DP-SGD: per-example gradients clipped to C = 1, Gaussian noise 0.6 C, / (q N)
    DP sigma=1.5  the same with noise 1.5 C

then measures, per canary, its exact rank among all 10^5 candidates and exposure
log2(10^5) - log2(rank), the validation loss on the untouched validation split, and epsilon at
delta = 1e-5 (below 1/N ~ 8e-5, as it should be) from the RDP accountant.

The model is the `nano` preset (3 layers, 3 heads, width 48, context 32; 91k parameters), not
`baby`: DP-SGD needs big lots (the noise on the averaged gradient has std sigma C / (q N) per
coordinate, against a signal of norm <= C spread over every weight) and many of them, and
per-example gradients for baby cost about 0.43 CPU s per 32 examples here (0.06 s per 64 for
nano), which would leave baby about 120 lots of 256 in this benchmark's budget.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/canary_exposure.py      # ~12 CPU-min
    python benchmarks/canary_exposure.py --plot-only                                     # redraw the PNG

Writes benchmarks/results/canary_exposure.json and canary_exposure.png. Costs are CPU seconds
(time.process_time) on one thread.

Measured (2026-12-03, this project's machine, 713 CPU s in all; 24 epochs of the 12,686 windows):

    | arm          | epsilon | val loss | exposure 1x | 4x  | 16x  | 64x  |
    | no DP        | -       | 1.379    | 2.6         | 3.1 | 11.9 | 16.6 |
    | DP sigma=0.6 | 17.34   | 2.004    | 1.7         | 0.4 | 2.8  | 8.5  |
    | DP sigma=1.5 | 2.40    | 2.220    | 1.6         | 0.6 | 1.5  | 6.4  |

Exposure is the mean of 3 canaries (16.6 = all three ranked first of 10^5). A rank drawn at random
has exposure log2(e) ~ 1.4 bits on average, with a standard deviation of 1.4 for one canary, so
differences of a bit between means of three are within chance.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minilm.autograd.grad_mode import no_grad  # noqa: E402
from minilm.data import load_corpus, split_text  # noqa: E402
from minilm.io.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402
from minilm.models.gpt import GPT  # noqa: E402
from minilm.models.gpt_config import GPTConfig  # noqa: E402
from minilm.nn import functional as F  # noqa: E402
from minilm.optim import Adam, WarmupCosine  # noqa: E402
from minilm.privacy.accountant import dp_sgd_epsilon  # noqa: E402
from minilm.privacy.canaries import canary_exposure, make_canaries, plant  # noqa: E402
from minilm.privacy.dp_sgd import DPSGD, poisson_lot  # noqa: E402
from minilm.privacy.per_example import example_losses  # noqa: E402
from minilm.tokenizers import CharTokenizer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
REPEATS = (1, 4, 16, 64)
PER_COUNT = 3
N_DIGITS = 5
PRESET = "nano"
LOT, STEPS, LR, WARMUP = 256, 1200, 3e-3, 50
CLIP, DELTA = 1.0, 1e-5
ARMS = (("no DP", None), ("DP sigma=0.6", 0.6), ("DP sigma=1.5", 1.5))
SEED = 0


def build_data():
    """Planted training windows (x, y), validation windows, tokenizer, canaries and counts."""
    rng = np.random.default_rng(SEED)
    train_text, val_text = split_text(load_corpus("pydoc"), 0.1)
    canaries = make_canaries(len(REPEATS) * PER_COUNT, N_DIGITS, rng)
    counts = [r for r in REPEATS for _ in range(PER_COUNT)]
    block = GPTConfig.preset(PRESET, vocab_size=1).block_size
    window = block + 1
    planted, _ = plant(train_text, canaries, counts, window, rng)
    tok = CharTokenizer.from_text(planted + val_text)
    n = len(planted) // window
    ids = np.asarray(tok.encode(planted[:n * window]), dtype=np.int64).reshape(n, window)
    n_val = len(val_text) // window
    val = np.asarray(tok.encode(val_text[:n_val * window]), dtype=np.int64).reshape(n_val, window)
    return dict(x=ids[:, :-1], y=ids[:, 1:], val=val, tok=tok, canaries=canaries, counts=counts, block=block)


def validation_loss(model, val, batch=256):
    model.eval()
    total = 0.0
    with no_grad():
        for s in range(0, len(val), batch):
            v = val[s:s + batch]
            total += float(F.cross_entropy(model(v[:, :-1]), v[:, 1:]).item()) * len(v)
    model.train()
    return total / len(val)


def train_arm(data, sigma):
    """Train one arm; returns (model, cpu seconds, last-100-step mean training loss)."""
    cfg = GPTConfig.preset(PRESET, vocab_size=data["tok"].vocab_size, dropout=0.0)
    model = GPT(cfg, generator=np.random.default_rng(SEED))
    opt = Adam(model.parameters(), lr=LR)
    sched = WarmupCosine(opt, warmup_steps=WARMUP, max_steps=STEPS, min_lr_ratio=0.1)
    x, y = data["x"], data["y"]
    n = len(x)
    q = LOT / n
    lots = np.random.default_rng(SEED + 1)          # the same lots in every arm
    dp = None if sigma is None else DPSGD(model, opt, CLIP, sigma, q, n, np.random.default_rng(SEED + 2))
    losses = []
    cpu = time.process_time()
    for step in range(STEPS):
        lot = poisson_lot(n, q, lots)
        if dp is None:
            opt.zero_grad()
            _, loss = model(x[lot], y[lot])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        else:
            stats = dp.step(lambda idx: example_losses(model(x[idx]), y[idx]), lot)
            losses.append(stats["loss"])
        sched.step()
        if step % 200 == 0 or step == STEPS - 1:
            print(f"    step {step:5d}  lot {len(lot):3d}  train loss {losses[-1]:.3f}", flush=True)
    return model, time.process_time() - cpu, float(np.mean(losses[-100:]))


def run():
    data = build_data()
    n = len(data["x"])
    print(f"{n} training windows of {data['block'] + 1} characters, q = {LOT / n:.4f}, {STEPS} steps, "
          f"{len(data['canaries'])} canaries x {REPEATS}", flush=True)
    result = {"preset": PRESET, "n_train_examples": n, "window": data["block"] + 1, "lot": LOT,
              "sample_rate": LOT / n, "steps": STEPS, "lr": LR, "clip": CLIP, "delta": DELTA,
              "n_digits": N_DIGITS, "n_candidates": 10 ** N_DIGITS, "repeats": list(REPEATS),
              "canaries": [{"prefix": c.prefix, "secret": c.secret, "count": k}
                           for c, k in zip(data["canaries"], data["counts"])], "arms": []}
    for name, sigma in ARMS:
        print(f"arm {name}", flush=True)
        model, train_cpu, train_loss = train_arm(data, sigma)
        cpu = time.process_time()
        val = validation_loss(model, data["val"])
        rows = [dict(count=k, **canary_exposure(model, data["tok"], c))
                for c, k in zip(data["canaries"], data["counts"])]
        eps = None if sigma is None else dp_sgd_epsilon(LOT / n, sigma, STEPS, DELTA)
        by_count = {str(r): float(np.mean([row["exposure"] for row in rows if row["count"] == r])) for r in REPEATS}
        arm = {"name": name, "noise_multiplier": sigma, "epsilon": eps, "val_loss": val,
               "train_loss_last100": train_loss, "train_cpu_seconds": round(train_cpu, 1),
               "eval_cpu_seconds": round(time.process_time() - cpu, 1), "exposure_by_count": by_count,
               "canaries": rows}
        result["arms"].append(arm)
        print(f"  {name}: val loss {val:.3f}, epsilon {eps if eps is None else round(eps, 2)}, mean exposure "
              + ", ".join(f"{r}x {by_count[str(r)]:.1f}" for r in REPEATS)
              + f"  (train {train_cpu:.0f} CPU s)", flush=True)
    return result


def table(result):
    head = "| arm | epsilon (delta=1e-5) | val loss | " + " | ".join(f"exposure {r}x" for r in result["repeats"]) + " |"
    lines = [head, "|" + "---|" * (3 + len(result["repeats"]))]
    for arm in result["arms"]:
        eps = "inf (no DP)" if arm["epsilon"] is None else f"{arm['epsilon']:.2f}"
        lines.append(f"| {arm['name']} | {eps} | {arm['val_loss']:.3f} | "
                     + " | ".join(f"{arm['exposure_by_count'][str(r)]:.1f}" for r in result["repeats"]) + " |")
    return "\n".join(lines)


def plot(result, path):
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    reps = result["repeats"]
    for arm in result["arms"]:
        label = arm["name"] + ("" if arm["epsilon"] is None else f" (eps={arm['epsilon']:.1f})")
        line, = ax.plot(reps, [arm["exposure_by_count"][str(r)] for r in reps], "o-", label=label)
        for row in arm["canaries"]:
            ax.plot(row["count"], row["exposure"], ".", color=line.get_color(), alpha=0.4)
    ax.axhline(np.log2(result["n_candidates"]), color="grey", ls=":", lw=1)
    ax.text(reps[0], np.log2(result["n_candidates"]) - 0.9, "fully memorised", color="grey", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(reps, [str(r) for r in reps])
    ax.set_xlabel("copies of the canary in the training data")
    ax.set_ylabel("exposure (bits); dots = single canaries")
    ax.set_title(f"Canary exposure, GPT {result['preset']} on pydoc")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON")
    args = parser.parse_args()
    json_path, png_path = RESULTS / "canary_exposure.json", RESULTS / "canary_exposure.png"
    if args.plot_only:
        result = json.loads(json_path.read_text())
    else:
        cpu = time.process_time()
        result = run()
        result["total_cpu_seconds"] = round(time.process_time() - cpu, 1)
        atomic_write_text(json_path, json.dumps(result, indent=1) + "\n")
    print(table(result))
    plot(result, png_path)
    print(f"wrote {json_path} and {png_path}")


if __name__ == "__main__":
    main()
