"""Plots for training runs (matplotlib is optional: without it, plotting says so and returns None)."""
import json
from pathlib import Path


def read_metrics(path):
    """The records of a metrics.jsonl file as a list of dicts."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_loss_curves(metrics_path, out_png, title=None):
    """Train loss (every logged step) and validation loss (every evaluation) against the step.

    Returns the PNG path, or None when matplotlib is not installed.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    records = read_metrics(metrics_path)
    train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    if train:
        ax.plot(*zip(*train), lw=1, alpha=0.7, label="train")
    if val:
        ax.plot(*zip(*val), "o-", lw=1.5, ms=3, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats)")
    ax.set_title(title or Path(metrics_path).parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return Path(out_png)
