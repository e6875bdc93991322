"""Tutorial notebooks: each runs top to bottom without error (CI tier `-m notebook`),
and the committed copy was executed (its outputs are not stale placeholders)."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "tutorials").glob("*.ipynb"))


def _code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_was_executed_in_order_without_errors(path):
    nb = json.loads(path.read_text())
    cells = _code_cells(nb)
    counts = [c.get("execution_count") for c in cells]
    assert all(isinstance(n, int) for n in counts), f"{path.name}: some code cells were never run"
    assert counts == sorted(counts) and counts[0] == 1, f"{path.name}: cells were not run top to bottom once"
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: committed with an error output"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path):
    sys.path.insert(0, str(ROOT / "scripts"))
    from run_tutorials import execute
    _, seconds = execute(path, write=False)
    print(f"{path.name}: {seconds:.1f} s")
