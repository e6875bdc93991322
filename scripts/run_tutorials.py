"""Execute the tutorial notebooks top to bottom and write their outputs back.

    python scripts/run_tutorials.py                 # every chapter and every solutions notebook
    python scripts/run_tutorials.py 01 04           # chapters (and their solutions) whose name starts so

The committed outputs of every notebook come from this script run on the
current code. Each notebook runs with its own folder as working directory.
The worked solutions to each chapter's exercises are notebooks too, in
tutorials/solutions/ ("01_autograd_from_scratch_solutions.ipynb"), executed the same way.
"""
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
SOLUTIONS = TUTORIALS / "solutions"


def notebooks():
    """Every chapter, then every solutions notebook, each group in name order."""
    return sorted(TUTORIALS.glob("*.ipynb")) + sorted(SOLUTIONS.glob("*.ipynb"))


def execute(path, timeout=600, write=True):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    if write:
        nbformat.write(nb, path)
    return nb, seconds


def main(prefixes):
    paths = notebooks()
    if prefixes:
        paths = [p for p in paths if any(p.name.startswith(x) for x in prefixes)]
    for path in paths:
        _, seconds = execute(path)
        print(f"{path.relative_to(TUTORIALS)}: executed in {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
