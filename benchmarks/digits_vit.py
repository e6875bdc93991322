"""Benchmark: Transformer blocks on images. A ViT classifies scikit-learn's 8x8 digits, and an
image-to-text model writes each digit's English word while cross-attending to the image's patches.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        python benchmarks/digits_vit.py [--steps 2000] [--seeds 0 1 2] [--shift 1]

Data: 1,797 images, a fixed stratified split (seed 0): 1,438 training, 359 test
(minilm/apps/digits.py). Both models use 2x2 patches (16 patch tokens), d_model 64, 4 heads, 2
encoder layers; the image-to-text model adds one decoder layer (the translator's) over an
18-token vocabulary (15 letters, <pad>, <bos>, <eos>). Baseline: 1-nearest-neighbour on raw pixels
(Euclidean), which needs no training: it says how hard the test set is.

Prints a table and writes benchmarks/results/digits_vit.json and digits_vit.png (test images with
the ViT's digit and the written word, and the decoder's cross-attention over the patches while it
writes). Costs are CPU seconds (time.process_time) on one thread.
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from minilm.apps import digits as dg
from minilm.io.atomic import atomic_write_bytes, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def nearest_neighbour_accuracy(data):
    """1-NN on raw pixels: each test image gets the label of the closest training image."""
    a = data.test_images.reshape(len(data.test_images), -1).astype(np.float64)
    b = data.train_images.reshape(len(data.train_images), -1).astype(np.float64)
    d2 = (a ** 2).sum(1)[:, None] - 2 * a @ b.T + (b ** 2).sum(1)[None, :]
    return float((data.train_labels[d2.argmin(1)] == data.test_labels).mean())


def plot(classifier, captioner, data, path, picks):
    """Rows: one test image each; its ViT digit and written word, then the cross-attention per character."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = 1 + dg.MAX_WORD
    fig, axes = plt.subplots(len(picks), cols, figsize=(1.35 * cols, 1.5 * len(picks)))
    digits = dg.predict(classifier, data.test_images[picks])
    words = dg.greedy_words(captioner, data.test_images[picks])
    for row, (i, digit, word) in enumerate(zip(picks, digits, words)):
        ax = axes[row, 0]
        ax.imshow(data.test_images[i], cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"label {data.test_labels[i]}\nViT {digit}, text {word!r}", fontsize=7)
        ax.axis("off")
        dg.plot_cross_attention(axes[row, 1:], captioner, data.test_images[i])
    fig.suptitle("image -> text: cross-attention (mean of heads) over the 4x4 patch grid at each written "
                 "character", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000, help="classifier steps (batch 64)")
    ap.add_argument("--text-steps", type=int, default=2000, help="image-to-text steps (batch 64)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="classifier seeds")
    ap.add_argument("--text-seeds", type=int, nargs="+", default=[0, 1], help="image-to-text seeds")
    ap.add_argument("--shift", type=int, default=1, help="random shift of training images, in pixels")
    ap.add_argument("--out", default=str(RESULTS / "digits_vit.json"))
    ap.add_argument("--plot", default=str(RESULTS / "digits_vit.png"))
    args = ap.parse_args(argv)
    cpu_start = time.process_time()

    data = dg.load()
    knn = nearest_neighbour_accuracy(data)
    print(f"{len(data.train_labels)} training, {len(data.test_labels)} test images; 1-NN pixels: {knn:.4f}")

    classifier_runs, first_classifier = [], None
    for seed in args.seeds:
        model = dg.new_classifier(seed=seed)
        t0 = time.process_time()
        history = dg.train_classifier(model, data, steps=args.steps, seed=seed, shift=args.shift, log_every=500,
                                      log=lambda s: print("  classifier", s, flush=True))
        cpu = time.process_time() - t0
        acc = dg.accuracy(model, data.test_images, data.test_labels)
        classifier_runs.append(dict(seed=seed, test_accuracy=round(acc, 4), cpu_seconds=round(cpu, 1),
                                    train_accuracy=round(dg.accuracy(model, data.train_images, data.train_labels), 4),
                                    loss_history=[[s, round(l, 4)] for s, l, _ in history]))
        print(f"classifier seed {seed}: test accuracy {acc:.4f} ({cpu:.0f} CPU s)", flush=True)
        first_classifier = first_classifier or model
    n_cls = sum(p.numel() for p in first_classifier.parameters())

    text_runs, first_text = [], None
    for seed in args.text_seeds:
        model = dg.new_image_to_text(seed=seed)
        t0 = time.process_time()
        history = dg.train_image_to_text(model, data, steps=args.text_steps, seed=seed, shift=args.shift,
                                         log_every=500, log=lambda s: print("  image-to-text", s, flush=True))
        cpu = time.process_time() - t0
        em, misses = dg.exact_match(model, data.test_images, data.test_labels)
        by_step, ink_share = dg.attention_on_ink(model, data.test_images)
        text_runs.append(dict(seed=seed, test_exact_match=round(em, 4), cpu_seconds=round(cpu, 1),
                              misses=[[int(i), w, g] for i, w, g in misses[:8]],
                              cross_attention_on_ink_by_step=[round(v, 3) for v in by_step],
                              ink_patch_share=round(ink_share, 3),
                              loss_history=[[s, round(l, 4)] for s, l, _ in history]))
        print(f"image-to-text seed {seed}: exact match {em:.4f} ({cpu:.0f} CPU s); attention on ink by step "
              f"{[round(v, 2) for v in by_step]} (ink patches {ink_share:.2f})", flush=True)
        first_text = first_text or model
    n_text = sum(p.numel() for p in first_text.parameters())

    picks = [int(np.flatnonzero(data.test_labels == d)[0]) for d in (2, 3, 5, 7)]
    plot(first_classifier, first_text, data, args.plot, picks)
    accs = [r["test_accuracy"] for r in classifier_runs]
    ems = [r["test_exact_match"] for r in text_runs]
    total_cpu = time.process_time() - cpu_start
    result = dict(
        task="scikit-learn load_digits (8x8): ViT classification, and image -> English word (characters) "
             "with cross-attention over the patches",
        command=" ".join(["python", "benchmarks/digits_vit.py"] + (argv if argv is not None else sys.argv[1:])),
        data=dict(images=len(data.train_labels) + len(data.test_labels), train=len(data.train_labels),
                  test=len(data.test_labels), split="stratified, 20% of each digit held out, seed 0",
                  pixels="0..16 scaled to [0, 1]", training_shift_pixels=args.shift),
        baseline=dict(method="1-nearest-neighbour on raw pixels (Euclidean)", test_accuracy=round(knn, 4)),
        classifier=dict(model=dict(patch_size=2, d_model=64, nhead=4, num_layers=2, dim_feedforward=128,
                                   pool="cls", parameters=n_cls),
                        training=dict(steps=args.steps, batch_size=64, lr=2e-3, weight_decay=0.05),
                        runs=classifier_runs, mean_test_accuracy=round(float(np.mean(accs)), 4),
                        min_test_accuracy=round(float(np.min(accs)), 4)),
        image_to_text=dict(model=dict(encoder="as the classifier, no [CLS]: 16 patch vectors as memory",
                                      decoder_layers=1, vocabulary=dg.ITOS, parameters=n_text),
                           training=dict(steps=args.text_steps, batch_size=64, lr=2e-3, weight_decay=0.05),
                           decoding="greedy, character by character, until <eos>",
                           runs=text_runs, mean_test_exact_match=round(float(np.mean(ems)), 4)),
        plot_test_indices=picks,
        total_cpu_seconds=round(total_cpu, 1),
        machine=dict(python=platform.python_version(), threads=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")

    print(f"\n{'model':34s} {'test metric':>22s} {'CPU s':>7s}")
    print(f"{'1-NN on pixels (baseline)':34s} {'accuracy ' + format(knn, '.4f'):>22s} {'-':>7s}")
    for r in classifier_runs:
        print(f"{'ViT classifier, seed ' + str(r['seed']):34s} {'accuracy ' + format(r['test_accuracy'], '.4f'):>22s}"
              f" {r['cpu_seconds']:7.0f}")
    for r in text_runs:
        print(f"{'image -> word, seed ' + str(r['seed']):34s} "
              f"{'exact match ' + format(r['test_exact_match'], '.4f'):>22s} {r['cpu_seconds']:7.0f}")
    print(f"total {total_cpu:.0f} CPU s; wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
