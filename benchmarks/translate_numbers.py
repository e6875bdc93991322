"""Benchmark: English number words -> Chinese numerals and German number words (minilm.apps.translate).

Trains one Seq2SeqTransformer for both directions (a target-language token
starts the decoder's input; see minilm/apps/translate.py for why), then
measures exact match on the 1,000 held-out test numbers and on 1,000 numbers
of the held-out band 600,000..609,999, with greedy decoding and beam search
(beam 4). The baseline translates word by word with a perfect lexicon
(twelve -> 十二 / zwölf): it shows how much of the task is reordering and
regrouping rather than vocabulary.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        python benchmarks/translate_numbers.py [--steps 3000] [--save model.safetensors]

Writes benchmarks/results/translate_numbers.json and translate_attention.png
and prints a table. Costs are CPU seconds (time.process_time).
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from minilm.apps import number_words as nw
from minilm.apps import translate as tr
from minilm.io.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def plot_attention(model, number, path):
    """One heatmap per direction: last decoder layer's cross-attention, averaged over heads."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    for ax, lang in zip(axes, tr.LANGS):
        tr.plot_cross_attention(ax, model, number, lang)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--save", help="also save the trained model here (safetensors)")
    ap.add_argument("--out", default=str(RESULTS / "translate_numbers.json"))
    ap.add_argument("--plot", default=str(RESULTS / "translate_attention.png"))
    args = ap.parse_args(argv)

    split = nw.Split()
    sets = {"test": split.test_numbers, "band": split.band_numbers(1000)}
    baseline = {}
    for lang in tr.LANGS:                                   # word-by-word with the writers' own lexicon
        for name, numbers in sets.items():
            hits = [tr.word_by_word(nw.english(int(n)), lang) == nw.WRITERS[lang](int(n)) for n in numbers]
            baseline[f"en->{lang} {name}"] = round(float(np.mean(hits)), 4)
    print("word-by-word baseline:", baseline)

    sizes = dict(d_model=128, nhead=4, num_encoder_layers=args.layers, num_decoder_layers=args.layers,
                 dim_feedforward=512)
    model = tr.new_model(seed=args.seed, **sizes)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"Seq2SeqTransformer {sizes}: {n_params:,} parameters; {args.steps} steps of {args.batch_size}")
    start = time.process_time()
    history = tr.train(model, split, args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       log=lambda s: print(s, flush=True))
    train_cpu = time.process_time() - start
    if args.save:
        tr.save_model(model, args.save)

    rows = []
    for lang in tr.LANGS:
        for name, numbers in sets.items():
            for beam in (1, args.beam):
                t0 = time.process_time()
                acc, misses = tr.exact_match(model, numbers, lang, beam_size=beam)
                rows.append(dict(direction=f"en->{lang}", set=name, n=len(numbers), decoding=
                                 "greedy" if beam == 1 else f"beam {beam}", exact_match=round(acc, 4),
                                 eval_cpu_s=round(time.process_time() - t0, 1),
                                 misses=[list(m) for m in misses[:5]]))
                print(f"{rows[-1]['direction']:7s} {name:5s} {rows[-1]['decoding']:7s} exact {acc:.3f}", flush=True)

    examples = {lang: {str(n): tr.translate(model, nw.english(n), lang) for n in (312_005, 10_010, 100_005, 605_017)}
                for lang in tr.LANGS}
    plot_attention(model, 312_005, args.plot)
    result = dict(
        task="English number words -> Chinese numerals / German number words (one model, <2zh>/<2de> token)",
        command=" ".join(["python", "benchmarks/translate_numbers.py"] + (argv if argv is not None else sys.argv[1:])),
        model=dict(sizes, parameters=n_params, norm_first=True),
        training=dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      cpu_seconds=round(train_cpu, 1), loss_history=[[s, round(l, 4), round(c, 1)]
                                                                     for s, l, c in history]),
        split=dict(test=f"{split.n_test} numbers, uniform outside the band, seed {split.seed}",
                   band=f"[{split.band[0]}, {split.band[1]}) held out; 1,000 of it evaluated"),
        baseline=dict(method="word by word: each English word replaced by the writers' own translation "
                             "of it, in English order, 'and' dropped (minilm.apps.translate.word_by_word)",
                      exact_match=baseline),
        results=rows, examples=examples,
        machine=dict(python=platform.python_version(), threads=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=1, ensure_ascii=False) + "\n")

    print(f"\ntrained {args.steps} steps in {train_cpu:.0f} CPU s")
    print(f"{'direction':9s} {'set':5s} {'decoding':8s} {'exact match':>11s}")
    for r in rows:
        print(f"{r['direction']:9s} {r['set']:5s} {r['decoding']:8s} {r['exact_match']:11.3f}")
    print("word-by-word baseline:", baseline)
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
