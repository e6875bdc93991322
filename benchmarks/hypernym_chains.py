"""Chaining WordNet facts: does a small GPT answer "X is-a-2 ?" when it learned "X is-a Y" and "Y is-a Z"?

The facts are the hypernym links under animal.n.01 (about 3,700 links, 3,700 entity tokens); the
splits and formats are minilm.apps.hypernyms'. Two formats, the same model (2 layers, 4 heads,
width 128), steps (3,000), batch (128 facts) and learning rate (2e-3, no weight decay):

* direct: "X is-a-2 Z" is trained for 80% of the subjects, asked for the other 20%;
* chain of thought: the same, written "X is-a-2 Y Z", so the model names the middle link first.

Scores are top-1 over the whole vocabulary (greedy); chance is 1 / entities, and the majority
baseline always answers the relation's most frequent training answer. Each format runs with two
seeds (model initialisation and batch order; the splits stay fixed).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/hypernym_chains.py    # ~7 CPU-min

Writes benchmarks/results/hypernym_chains.json and prints the table.
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minilm.apps import hypernyms as H  # noqa: E402
from minilm.io.atomic import atomic_write_text  # noqa: E402

ANIMAL = 15388  # animal.n.01
ROWS = ("one_step_train", "one_step_held_out", "two_step_train", "two_step_test", "two_step_test_sibling",
        "two_step_test_no_sibling", "two_step_control")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hypernym_chains.json")
    args = p.parse_args(argv)
    splits = H.make_splits(H.subtree_edges(H.read_hypernym_links(), ANIMAL), seed=0)
    results = {"command": "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/hypernym_chains.py",
               "root": "animal.n.01", "split_sizes": {k: len(v) for k, v in splits.items()},
               "chance": 1 / len(splits["entities"]), "runs": []}
    print("split sizes (facts):", results["split_sizes"], flush=True)
    for cot in (False, True):
        for seed in args.seeds:
            model, vocab, history = H.train_fact_model(splits, steps=args.steps, chain_of_thought=cot, seed=seed)
            rows = H.evaluate(model, vocab, splits, chain_of_thought=cot)
            results["runs"].append({"format": "chain of thought" if cot else "direct", "seed": seed,
                                    "steps": args.steps, "parameters": model.num_parameters(non_embedding=False),
                                    "train_cpu_seconds": round(history["cpu_seconds"], 1),
                                    "final_loss": round(history["loss"][-1], 5),
                                    "scores": {k: rows[k] for k in ROWS}})
            print(f"  {results['runs'][-1]['format']:16s} seed {seed}: two-step test "
                  f"{rows['two_step_test']['accuracy']:.3f}  ({history['cpu_seconds']:.0f} CPU s)", flush=True)
    atomic_write_text(args.out, json.dumps(results, indent=1) + "\n")
    print_table(results)


def print_table(results):
    runs = results["runs"]
    print(f"\nTop-1 accuracy (chance {results['chance']:.4f}); questions = distinct subjects")
    header = f"{'split':26s} {'questions':>9s} {'majority':>8s}"
    for r in runs:
        header += f" {('CoT' if r['format'] != 'direct' else 'direct') + ' s' + str(r['seed']):>9s}"
    print(header)
    for name in ROWS:
        first = runs[0]["scores"][name]
        line = f"{name:26s} {first['questions']:>9d} {first['majority_baseline'] or 0:>8.3f}"
        for r in runs:
            acc = r["scores"][name]["accuracy"]
            line += f" {acc if acc is not None else float('nan'):>9.3f}"
        print(line)
    print("train CPU s                                  " + " ".join(f"{r['train_cpu_seconds']:>9}" for r in runs))


if __name__ == "__main__":
    main()
