"""Word senses from WordNet examples: all-MiniLM-L6-v2 against random, first-sense and Lesk.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/word_senses.py           # all items
    python benchmarks/word_senses.py --limit 500                                         # a quick sample

Writes benchmarks/results/word_senses.json and prints a table. See minilm/apps/word_senses.py for the task.
"""
import argparse
import json
import time
from pathlib import Path

from minilm.apps.word_senses import evaluate
from minilm.transfer import SentenceEncoder

RESULTS = Path(__file__).parent / "results" / "word_senses.json"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="score a seeded sample of this many items per part of speech")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    encoder = SentenceEncoder.from_pretrained()
    rows = []
    for pos in ("noun", "verb"):
        start = time.process_time()
        row = evaluate(pos, lambda texts: encoder.encode(texts, batch_size=64), limit=args.limit)
        row["cpu_seconds"] = round(time.process_time() - start, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'pos':5} {'items':>6} {'lemmas':>6} {'senses':>6} {'random':>7} {'first':>7} {'Lesk':>7} {'MiniLM':>7}")
    for r in rows:
        print(f"{r['pos']:5} {r['items']:6d} {r['lemmas']:6d} {r['mean_senses']:6.2f} {r['random']:7.3f} "
              f"{r['first_sense']:7.3f} {r['lesk']:7.3f} {r['encoder']:7.3f}")
    Path(args.out).write_text(json.dumps({"command": "python benchmarks/word_senses.py"
                                          + (f" --limit {args.limit}" if args.limit else ""),
                                          "model": "all-MiniLM-L6-v2", "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
