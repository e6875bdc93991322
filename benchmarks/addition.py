"""Multi-digit addition with a small GPT: per digit count, length generalisation, scratchpad vs direct.

Every score is exact match on 1,000 held-out problems per digit count (test_pairs(n, 1000, seed=0),
never drawn for training; 20 for one digit, a fifth of its 100 pairs); answers are greedy. Costs are
CPU seconds (time.process_time) at one thread.

Part "direct": minGPT's adder recipe, one model per digit count n = 3, 4, 5: a GPT of 2 layers,
4 heads, width 64, batch 64, AdamW lr 1e-3 (warm-up 100, cosine to 1e-4), 1,000 n steps.

Part "length": one model of the same shape trained on 1-, 2- and 3-digit problems (mixed in each
batch, 3,000 steps, context long enough for 4 digits) and tested on 1 to 4 digits. Positions 12-14
of a 4-digit problem are never seen in training, so their learned position vectors are still random.

Part "scratchpad": a model too small for direct answers (1 layer, 4 heads, width 64), the same
parameters, steps (1,500), batch (64 problems), learning rate and schedule for both formats, at
n = 3, 4, 5; direct writes n + 1 tokens per answer, the scratchpad 10 n + 1. Part "scratchpad_longer"
repeats n = 5 with 3,000 steps for both formats, and part "direct_longer" the 2-layer direct recipe
at n = 5 with 10,000 steps.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/addition.py                   # all, ~22 CPU-min
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/addition.py --part scratchpad # one part
    python benchmarks/addition.py --plot-only                                                # redraw the PNG

Writes benchmarks/results/addition.json (a part run alone replaces only its own entry) and addition.png.
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minilm.apps import addition as A  # noqa: E402
from minilm.io.atomic import atomic_write_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TEST_SIZE, SEED = 1000, 0
DIRECT = dict(n_layer=2, n_head=4, n_embd=64, batch_size=64, lr=1e-3)
SMALL = dict(n_layer=1, n_head=4, n_embd=64, batch_size=64, lr=1e-3)


def run(train_digits, test_digits, steps, with_scratchpad, shape, block_size=None):
    """Train one model, score it on each test digit count; a JSON-able dict."""
    model, history, _ = A.train_adder(train_digits, steps=steps, with_scratchpad=with_scratchpad,
                                      block_size=block_size, test_size=TEST_SIZE, seed=SEED, **shape)
    row = {"train_digits": list(train_digits), "steps": steps, "scratchpad": with_scratchpad, **shape,
           "parameters": model.num_parameters(non_embedding=False),
           "train_cpu_seconds": round(history["cpu_seconds"], 1),
           "final_loss": round(history["loss"][-1], 5), "test": {}}
    for n in test_digits:
        cpu = time.process_time()
        result = A.evaluate(model, A.test_pairs(n, A.held_out_size(n, TEST_SIZE), SEED), n, with_scratchpad)
        result["answer_tokens"] = A.target_length(n, with_scratchpad)
        result["eval_cpu_seconds"] = round(time.process_time() - cpu, 2)
        row["test"][str(n)] = result
        print(f"  train {train_digits} {'scratchpad' if with_scratchpad else 'direct':10s} test {n} digits: "
              f"exact match {result['accuracy']:.3f}  ({result['answer_tokens']} tokens per answer, "
              f"trained {row['train_cpu_seconds']} CPU s)", flush=True)
    return row


def part_direct():
    return [run((n,), (n,), 1000 * n, False, DIRECT) for n in (3, 4, 5)]


def part_length():
    return run((1, 2, 3), (1, 2, 3, 4), 3000, False, DIRECT, block_size=A.block_size_for(4))


def part_scratchpad():
    return [run((n,), (n,), 1500, sp, SMALL) for n in (3, 4, 5) for sp in (False, True)]


def part_scratchpad_longer():
    """5 digits again with twice the steps: is the scratchpad's 5-digit miss a matter of training time?"""
    return [run((5,), (5,), 3000, sp, SMALL) for sp in (False, True)]


def part_direct_longer():
    """5 digits with the direct recipe again, 10,000 steps: past the plateau 5,000 steps end on?"""
    return [run((5,), (5,), 10000, False, DIRECT)]


PARTS = {"direct": part_direct, "direct_longer": part_direct_longer, "length": part_length,
         "scratchpad": part_scratchpad, "scratchpad_longer": part_scratchpad_longer}


def print_tables(results):
    if "direct" in results:
        print("\nDirect answers, one 2-layer model per digit count (1,000 held-out problems each)")
        print(f"{'digits':>6} {'steps':>6} {'params':>7} {'exact match':>11} {'train CPU s':>11}")
        for r in results["direct"] + results.get("direct_longer", []):
            n = r["train_digits"][0]
            print(f"{n:>6} {r['steps']:>6} {r['parameters']:>7} {r['test'][str(n)]['accuracy']:>11.3f} "
                  f"{r['train_cpu_seconds']:>11}")
    if "length" in results:
        r = results["length"]
        print("\nLength generalisation: trained on 1-3 digits, tested on 1-4")
        for n, t in r["test"].items():
            digits = " ".join(f"{d:.2f}" for d in t["digit_accuracy"])
            print(f"  {n} digits: exact match {t['accuracy']:.3f}   per answer digit, lowest first: {digits}")
    if "scratchpad" in results:
        print("\nScratchpad vs direct: same 1-layer model, same steps, batch 64 problems")
        print(f"{'digits':>6} {'steps':>6} {'format':>10} {'exact match':>11} {'tokens/answer':>13} "
              f"{'train CPU s':>11}")
        for r in results["scratchpad"] + results.get("scratchpad_longer", []):
            n = r["train_digits"][0]
            t = r["test"][str(n)]
            print(f"{n:>6} {r['steps']:>6} {'scratchpad' if r['scratchpad'] else 'direct':>10} {t['accuracy']:>11.3f} "
                  f"{t['answer_tokens']:>13} {r['train_cpu_seconds']:>11}")


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8.5, 4))
    if "direct" in results:
        xs = [r["train_digits"][0] for r in results["direct"]]
        ax.plot(xs, [r["test"][str(x)]["accuracy"] for x, r in zip(xs, results["direct"])], "o-",
                label="direct, 2 layers, 1000n steps")
    if "scratchpad" in results:
        for sp, style in ((False, "s--"), (True, "^-")):
            rows = [r for r in results["scratchpad"] if r["scratchpad"] == sp]
            xs = [r["train_digits"][0] for r in rows]
            ax.plot(xs, [r["test"][str(x)]["accuracy"] for x, r in zip(xs, rows)], style,
                    label=f"{'scratchpad' if sp else 'direct'}, 1 layer, 1500 steps")
    for r in results.get("direct_longer", []):
        n = r["train_digits"][0]
        ax.plot([n], [r["test"][str(n)]["accuracy"]], "D", color="C0",
                label=f"direct, 2 layers, {r['steps']} steps")
    for r in results.get("scratchpad_longer", []):
        n = r["train_digits"][0]
        ax.plot([n], [r["test"][str(n)]["accuracy"]], "*" if r["scratchpad"] else "P", markersize=10,
                label=f"{'scratchpad' if r['scratchpad'] else 'direct'}, 1 layer, {r['steps']} steps")
    if "length" in results:
        test = results["length"]["test"]
        ax.plot([int(n) for n in test], [t["accuracy"] for t in test.values()], "x:",
                label="direct, trained on 1-3 digits only")
    ax.set_xlabel("digits per operand")
    ax.set_ylabel("exact match, 1,000 held-out problems")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xticks(range(1, 6))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.set_title("Addition with a small GPT (answers reversed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["all", *PARTS], default="all")
    p.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "addition.json"
    if not args.plot_only:
        for name in (PARTS if args.part == "all" else [args.part]):
            print(f"part {name}", flush=True)
            row = PARTS[name]()
            # read just before writing, so parts run side by side keep each other's entries
            results = json.loads(json_path.read_text()) if json_path.exists() else {}
            results[name] = row
            results["command"] = "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/addition.py"
            atomic_write_text(json_path, json.dumps(results, indent=1) + "\n")
    results = json.loads(json_path.read_text())
    print_tables(results)
    plot(results, args.out / "addition.png")


if __name__ == "__main__":
    main()
