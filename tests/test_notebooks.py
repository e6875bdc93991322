"""Tutorial notebooks and their solutions: each runs top to bottom without error (CI tier
`-m notebook`), and the committed copy was executed (its outputs are not stale placeholders)."""
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from run_tutorials import notebooks  # noqa: E402

NOTEBOOKS = notebooks()
IDS = [str(p.relative_to(ROOT / "tutorials")) for p in NOTEBOOKS]
CHAPTERS = sorted((ROOT / "tutorials").glob("*.ipynb"))


def _code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_notebook_was_executed_in_order_without_errors(path):
    nb = json.loads(path.read_text())
    cells = _code_cells(nb)
    counts = [c.get("execution_count") for c in cells]
    assert all(isinstance(n, int) for n in counts), f"{path.name}: some code cells were never run"
    assert counts == sorted(counts) and counts[0] == 1, f"{path.name}: cells were not run top to bottom once"
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: committed with an error output"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_chapter_exercises_have_a_solutions_notebook(path):
    text = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                   if c["cell_type"] == "markdown")
    if "## Exercises" not in text:
        pytest.skip("no exercises")
    solutions = ROOT / "tutorials" / "solutions" / f"{path.stem}_solutions.ipynb"
    assert solutions.exists(), f"{path.name} has exercises but no {solutions.relative_to(ROOT)}"
    sol_text = "".join("".join(c["source"]) for c in json.loads(solutions.read_text())["cells"])
    n_exercises = len(re.findall(r"^\d+\. ", text.split("## Exercises", 1)[1], flags=re.M))
    for k in range(1, n_exercises + 1):
        assert f"## Exercise {k}" in sol_text, f"{solutions.name} has no solution to exercise {k}"


NOTES_IN_REPO = {p.name for p in ROOT.rglob("*.md") if ".git" not in p.parts}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_refers_only_to_files_in_the_repository(path):
    """A learner has only the repository: every relative path a notebook mentions must resolve to a
    file inside it, and every note it names (a *.md file) must be one the repository holds."""
    text = path.read_text()
    for relative in re.findall(r"(?:\.\./)+[\w./-]*\w", text):
        target = (path.parent / relative).resolve()
        assert target.is_relative_to(ROOT) and target.exists(), \
            f"{path.name} refers to {relative}, which is not a file of the repository"
    for name in set(re.findall(r"[\w-]+\.md\b", text)):
        assert name in NOTES_IN_REPO, f"{path.name} refers to {name}, which is not in the repository"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_executes(path):
    from run_tutorials import execute
    _, seconds = execute(path, write=False)
    print(f"{path.name}: {seconds:.1f} s")
