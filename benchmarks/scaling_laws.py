"""A mini scaling-law study: 7 GPT sizes at one token budget, and 6 token budgets for one size.

One corpus (pydoc, character tokens, the last 10% held out), one recipe (minilm.scaling.STUDY_RECIPE:
batch 16 x 64 characters, AdamW lr 3e-3 with 5% warm-up and cosine decay to 3e-4, weight decay 0.1,
clip 1.0, no dropout), and the mean validation cross-entropy over the whole held-out split.

Size sweep: 1-4 layers, widths 16-128, non-embedding N from 3,312 to 793,344 (240x), each trained on
D = 2,097,152 tokens (about 5 passes over the 418,648 training characters); the four smallest twice
(seeds 0 and 1), to see the seed-to-seed spread. Token sweep: the 3-layer width-64 model (N = 150,080)
on D = 2^17 ... 2^22 tokens (131,072 to 4,194,304), seed 0; its 2^21 run is the size sweep's.

Fits L(x) = a x^-alpha + c (minilm.scaling.fit_power_law, seeds averaged) to each sweep, with the
range of alpha over leave-one-out refits, and sets alpha beside Kaplan et al. 2020 and Hoffmann et
al. 2022 (minilm.scaling.REFERENCES). The learning rate 3e-3 came from a pilot at 524,288 tokens
(lr 1e-3 / 3e-3 / 1e-2: the smallest model reached 2.787 / 2.354 / 2.262, the 447,552-parameter
one 2.087 / 1.853 / 2.287), the best single value for both ends.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/scaling_laws.py  # 790 CPU s
    python benchmarks/scaling_laws.py --plot-only                                                 # refit, redraw

Writes benchmarks/results/scaling_laws.json (every run: shape, N, D, steps, val loss, CPU seconds,
seed; the recipe; the fits; the published values) and scaling_laws.png. The JSON is rewritten after
every run, and a rerun skips the runs it already holds (delete the file to start over).
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minilm import scaling as S  # noqa: E402
from minilm.io.atomic import atomic_write_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
COMMAND = "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/scaling_laws.py"
SIZES = [(1, 16), (2, 16), (2, 32), (2, 48), (3, 64), (4, 96), (4, 128)]     # (n_layer, n_embd)
TWO_SEEDS_UP_TO = 4                 # the first 4 sizes: seeds 0 and 1
D_FIXED = 2 ** 21
SWEEP_SIZE = (3, 64)
SWEEP_TOKENS = [2 ** k for k in range(17, 23)]


def planned_runs():
    """[(sweep, n_layer, n_embd, tokens, seed)] in the order they run."""
    runs = [("size_sweep", L, C, D_FIXED, seed) for i, (L, C) in enumerate(SIZES)
            for seed in ((0, 1) if i < TWO_SEEDS_UP_TO else (0,))]
    runs += [("token_sweep", *SWEEP_SIZE, d, 0) for d in SWEEP_TOKENS if d != D_FIXED]
    return runs


def empty_study(data):
    return {"command": COMMAND, "recipe": S.STUDY_RECIPE.to_dict(), "vocab_size": data.vocab_size,
            "train_tokens": int(data.train_ids.size), "val_tokens": int(data.val_ids.size),
            "size_sweep": {"D": D_FIXED, "runs": []},
            "token_sweep": {"n_layer": SWEEP_SIZE[0], "n_embd": SWEEP_SIZE[1], "runs": []},
            "references": S.REFERENCES}


def same_run(r, L, C, tokens, seed):
    return (r["n_layer"], r["n_embd"], r["D"], r["seed"]) == (L, C, tokens, seed)


def share_token_sweep_point(study):
    """The token sweep's D_FIXED point is the size sweep's run of SWEEP_SIZE, seed 0 (not trained twice)."""
    runs = study["token_sweep"]["runs"]
    if any(r["D"] == D_FIXED for r in runs):
        return
    for r in study["size_sweep"]["runs"]:
        if same_run(r, *SWEEP_SIZE, D_FIXED, 0):
            runs.append({**r, "shared_with": "size_sweep"})


def print_table(study):
    print(f"\nSize sweep at D = {study['size_sweep']['D']:,} tokens (val loss in nats per character)")
    print(f"{'layers':>6} {'width':>5} {'N':>9} {'N total':>9} {'D/N':>7} {'seed':>4} {'val loss':>8} {'CPU s':>7}")
    for r in study["size_sweep"]["runs"]:
        print(f"{r['n_layer']:>6} {r['n_embd']:>5} {r['N']:>9,} {r['N_total']:>9,} {r['D'] / r['N']:>7.1f} "
              f"{r['seed']:>4} {r['val_loss']:>8.4f} {r['cpu_seconds']:>7.1f}")
    t = study["token_sweep"]
    print(f"\nToken sweep, {t['n_layer']} layers width {t['n_embd']}")
    print(f"{'D':>10} {'steps':>6} {'epochs':>6} {'val loss':>8} {'CPU s':>7}")
    for r in t["runs"]:
        print(f"{r['D']:>10,} {r['steps']:>6} {r['D'] / study['train_tokens']:>6.2f} {r['val_loss']:>8.4f} "
              f"{r['cpu_seconds']:>7.1f}")
    fits, ref = study.get("fits"), study["references"]
    if fits:
        print("\nFits L(x) = a x^-alpha + c (seed means; alpha range over leave-one-out refits)")
        for name, published in (("L_of_N", f"Kaplan alpha_N {ref['kaplan2020']['alpha_N']}, "
                                           f"Chinchilla alpha {ref['hoffmann2022']['alpha']}"),
                                ("L_of_D", f"Kaplan alpha_D {ref['kaplan2020']['alpha_D']}, "
                                           f"Chinchilla beta {ref['hoffmann2022']['beta']}")):
            f = fits[name]
            lo, hi = f["leave_one_out_alpha"] or (float("nan"), float("nan"))
            print(f"  {name}: a {f['a']:.4g}  alpha {f['alpha']:.3f} (leave-one-out {lo:.3f}..{hi:.3f})  "
                  f"c {f['c']:.3f}  rms residual {(f['rss'] / f['n']) ** 0.5:.4f}   [{published}]")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--plot-only", action="store_true", help="refit and redraw from the JSON")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "scaling_laws.json"
    study = json.loads(json_path.read_text()) if json_path.exists() else None
    if not args.plot_only:
        data = S.load_study_data()
        study = study or empty_study(data)
        for sweep, L, C, tokens, seed in planned_runs():
            if any(same_run(r, L, C, tokens, seed) for r in study[sweep]["runs"]):
                continue
            row = S.train_run(L, C, tokens, seed=seed, data=data)
            print(f"{sweep}: {L} layers width {C:3d}  N {row['N']:>7,}  D {row['D']:>9,}  seed {seed}  "
                  f"val loss {row['val_loss']:.4f}  ({row['cpu_seconds']:.1f} CPU s)", flush=True)
            study[sweep]["runs"].append(row)
            share_token_sweep_point(study)
            study["token_sweep"]["runs"].sort(key=lambda r: r["D"])
            study["total_cpu_seconds"] = round(sum(r["cpu_seconds"] for k in ("size_sweep", "token_sweep")
                                                   for r in study[k]["runs"] if "shared_with" not in r), 1)
            atomic_write_text(json_path, json.dumps(study, indent=1) + "\n")
    if study is None:
        sys.exit(f"{json_path}: no results to plot (run without --plot-only first)")
    study["token_sweep"]["runs"].sort(key=lambda r: r["D"])
    study["fits"] = S.fit_study(study)
    atomic_write_text(json_path, json.dumps(study, indent=1) + "\n")
    print_table(study)
    S.plot_study(study, args.out / "scaling_laws.png")


if __name__ == "__main__":
    main()
