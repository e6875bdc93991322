"""A small mutation-testing run: does a one-line bug in the library fail a test?

    python scripts/mutation_test.py --label after                  # the working tree as it is now
    python scripts/mutation_test.py --label before --commit 6b224c2
    python scripts/mutation_test.py --label after --only train,generate --per-area 5

What it does:
1. Copies the tree (the working tree without .git, or `git archive <commit>`) to a
   temporary folder. The mutants are written only there, never into the repository.
2. Lists every one-line mutant of the modules below, found with `ast`:
   a comparison flipped (< to <=, == to !=, in to not in), + and - or * and /
   swapped, one term of a binary operation dropped (a - b -> a), an integer
   constant +-1 (defaults included), True <-> False, `and` <-> `or`, a unary
   minus or `not` dropped, a slice's bounds swapped (x[-n:] -> x[:n]), a
   returned value replaced by None, a call statement deleted (x.backward()).
3. Picks a fixed sample per area: mutants are ordered by a SHA-256 of (file,
   source line, mutation), not by line number, so the same mutants are picked
   from code that did not change when other lines did.
4. Runs each mutant against the fast test files of its area
   (`pytest -x -q -p no:cacheprovider`, one thread, a per-mutant timeout), with
   PYTHONPATH pointing at the copy, and counts it killed (a test failed),
   survived (all passed) or timed out. Tests that already fail on the
   unmutated copy are deselected first, so they cannot "kill" anything.
5. Also runs the named mutants of issue 15 (literal replacements) when their
   original text is present.

Prints a table per area and the survivors; --out saves the same text.
"""
import argparse
import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# area -> (source files, test files that should catch a bug in them). Test files that do
# not exist in the copied tree (e.g. new ones, in the "before" tree) are skipped.
AREAS = {
    "train": (["minilm/train.py"], ["tests/test_trainer_exact.py", "tests/test_train.py",
                                    "tests/test_resume_interrupt.py", "tests/test_run_folder.py"]),
    "pretrain": (["minilm/pretrain.py"], ["tests/test_trainer_exact.py", "tests/test_train.py",
                                          "tests/test_cli.py", "tests/test_run_folder.py"]),
    "cli": (["minilm/cli.py"], ["tests/test_cli.py", "tests/test_cli_errors.py"]),
    "generate": (["minilm/generate.py"], ["tests/test_generate.py", "tests/test_train.py",
                                          "tests/test_generate_stream.py"]),
    "sampling": (["minilm/sampling.py"], ["tests/test_sampling.py"]),
    "objectives": (["minilm/objectives.py"], ["tests/test_objectives.py", "tests/test_train.py"]),
    "optim": (["minilm/optim/adam.py", "minilm/optim/sgd.py", "minilm/optim/clip.py",
               "minilm/optim/lr_scheduler.py", "minilm/optim/optimizer.py", "minilm/optim/param_groups.py"],
              ["tests/test_optim.py"]),
    "data": (["minilm/data/ar_batches.py", "minilm/data/mlm_batches.py", "minilm/data/mlm_masking.py",
              "minilm/data/split.py", "minilm/data/token_arrays.py"],
             ["tests/test_data_ar.py", "tests/test_data_mlm.py", "tests/test_data_split_tokens.py"]),
    "tokenizers": (["minilm/tokenizers/bpe_train.py", "minilm/tokenizers/bpe.py", "minilm/tokenizers/char.py",
                    "minilm/tokenizers/wordpiece.py", "minilm/tokenizers/bert_basic.py",
                    "minilm/tokenizers/bert_inputs.py"],
                   ["tests/test_pretokenize_golden.py", "tests/test_tokenizer_bpe.py",
                    "tests/test_tokenizer_char.py", "tests/test_tokenizer_wordpiece.py",
                    "tests/test_tokenizer_files.py"]),
}

# Issue 15's named mutations: (area, file, original text, mutated text).
NAMED = [
    ("train", "minilm/train.py", "(loss * (1.0 / self.config.grad_accum)).backward()", "loss.backward()"),
    ("train", "minilm/train.py", "(loss * (1.0 / len(batches))).backward()", "loss.backward()"),
    ("train", "minilm/train.py", "clip_grad_norm_(self.model.parameters(), self.config.grad_clip)", "pass"),
    ("train", "minilm/train.py", "        self.scheduler.step()", "        pass"),
    ("train", "minilm/train.py", "groups = param_groups_for_weight_decay(model.named_parameters(), config.weight_decay)",
     "groups = [{'params': list(model.parameters()), 'weight_decay': config.weight_decay}]"),
    ("cli", "minilm/cli.py", "resume=args.resume", "resume=False"),
    ("generate", "minilm/generate.py", "idx[:, -block:]", "idx[:, :block]"),
    ("generate", "minilm/generate.py", "nxt = np.where(finished, eos_id, nxt)", "pass"),
    ("objectives", "minilm/objectives.py", "correct += int((predicted[chosen] == labels[chosen]).sum())",
     "correct += int((batch['input_ids'][chosen] == labels[chosen]).sum())"),
    ("tokenizers", "minilm/tokenizers/bpe_train.py", 'r"| ?[^\\W\\d_]+"', 'r"|[^\\W\\d_]+"'),
]

FLIP_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
SWAP_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
            ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult}


# ----- finding mutants ----------------------------------------------------------------------
def _parents(tree):
    parent = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parent[child] = node
    return parent


def _skippable(node, parent):
    """Inside an f-string, a raise, an assert, an import, __all__, a type annotation or the
    `if __name__ == "__main__":` block: not core logic."""
    p = node
    while p in parent:
        child, p = p, parent[p]
        if isinstance(p, ast.arg) and child is p.annotation:
            return True
        if isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)) and child is p.returns:
            return True
        if isinstance(p, ast.AnnAssign) and child is p.annotation:
            return True
        if isinstance(p, ast.If) and "__main__" in ast.unparse(p.test):
            return True
        if isinstance(p, (ast.JoinedStr, ast.Raise, ast.Assert, ast.Import, ast.ImportFrom)):
            return True
        if isinstance(p, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in p.targets):
            return True
    return False


def mutations_of(node):
    """(kind, replacement node or source text) for each one-line mutation of this node."""
    out = []
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in FLIP_CMP:
        new = ast.Compare(left=node.left, ops=[FLIP_CMP[type(node.ops[0])]()], comparators=node.comparators)
        out.append(("cmp " + type(node.ops[0]).__name__, new))
    elif isinstance(node, ast.BinOp):
        if type(node.op) in SWAP_BIN:
            out.append(("op " + type(node.op).__name__,
                        ast.BinOp(left=node.left, op=SWAP_BIN[type(node.op)](), right=node.right)))
        out.append(("drop right", node.left))
        out.append(("drop left", node.right))
    elif isinstance(node, ast.AugAssign) and type(node.op) in (ast.Add, ast.Sub, ast.Mult, ast.Div):
        swap = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}[type(node.op)]
        out.append(("augop " + type(node.op).__name__,
                    ast.AugAssign(target=node.target, op=swap(), value=node.value)))
    elif isinstance(node, ast.Constant) and type(node.value) is bool:
        out.append(("bool", ast.Constant(value=not node.value)))
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        out.append(("int +1", ast.Constant(value=node.value + 1)))
        if node.value != 0:
            out.append(("int -1", ast.Constant(value=node.value - 1)))
    elif isinstance(node, ast.Constant) and type(node.value) is float and node.value not in (0.0,):
        out.append(("float x2", ast.Constant(value=node.value * 2)))
    elif isinstance(node, ast.BoolOp):
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        out.append(("boolop", ast.BoolOp(op=other, values=node.values)))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        out.append(("drop unary " + type(node.op).__name__, node.operand))
    elif isinstance(node, ast.Slice) and (node.lower is not None or node.upper is not None):
        out.append(("slice swap", ast.Slice(lower=node.upper, upper=node.lower, step=node.step)))
    elif isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None):
        out.append(("return None", "return None"))
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        out.append(("delete call", "pass"))
    return out


def _segment(source_lines, node):
    """(start offset, end offset) of a node in the source text, from its line/column numbers."""
    starts = [0]
    for line in source_lines:
        starts.append(starts[-1] + len(line))
    return (starts[node.lineno - 1] + _char_col(source_lines[node.lineno - 1], node.col_offset),
            starts[node.end_lineno - 1] + _char_col(source_lines[node.end_lineno - 1], node.end_col_offset))


def _char_col(line, byte_col):
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))


def list_mutants(root, rel):
    """Every mutant of one file: dicts with file, line, kind, original and mutated source."""
    path = Path(root) / rel
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    tree = ast.parse(source)
    parent = _parents(tree)
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    original_dump = ast.dump(tree)
    mutants = []
    for node in ast.walk(tree):
        if not hasattr(node, "lineno") or id(node) in docstrings or _skippable(node, parent):
            continue
        for kind, replacement in mutations_of(node):
            text = replacement if isinstance(replacement, str) else ast.unparse(replacement)
            if isinstance(node, ast.expr) and not isinstance(node, (ast.Slice, ast.Constant)):
                text = f"({text})"
            start, end = _segment(lines, node)
            mutated = source[:start] + text + source[end:]
            try:
                if ast.dump(ast.parse(mutated)) == original_dump:
                    continue
            except SyntaxError:
                continue
            line_text = lines[node.lineno - 1].strip()
            key = f"{rel}|{line_text}|{source[start:end]}|{kind}"
            mutants.append({"file": rel, "line": node.lineno, "kind": kind, "line_text": line_text,
                            "was": source[start:end], "now": text, "source": mutated,
                            "key": hashlib.sha256(key.encode()).hexdigest()})
    # the same key twice (one expression repeated on a line): keep the first
    seen, unique = set(), []
    for m in mutants:
        if m["key"] not in seen:
            seen.add(m["key"])
            unique.append(m)
    return unique


def named_mutants(root, area):
    """Issue 15's mutants of this area whose original text is in the file (the others are
    alternatives for an older or newer version of the same line)."""
    out = []
    for a, rel, old, new in NAMED:
        if a != area:
            continue
        source = (Path(root) / rel).read_text(encoding="utf-8")
        if source.count(old) < 1:
            continue
        i = source.index(old)
        out.append({"file": rel, "line": source[:i].count("\n") + 1, "kind": "named", "line_text": old,
                    "was": old, "now": new, "source": source.replace(old, new, 1), "key": "named"})
    return out


# ----- running tests --------------------------------------------------------------------------
def _env(copy):
    env = dict(os.environ, PYTHONPATH=str(copy), OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("MINILM_BACKEND", None)
    return env


def run_pytest(copy, tests, timeout, deselect=(), extra=()):
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           "-m", "not slow and not notebook and not gpu", *extra, *tests]
    for d in deselect:
        cmd += ["--deselect", d]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    status = {0: "survived", 5: "survived"}.get(proc.returncode, "killed")
    return status, time.perf_counter() - t0, proc.stdout + proc.stderr


def baseline_failures(copy, tests):
    """Node ids of the tests that fail on the unmutated copy (deselected for the mutants)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-rf",
           "-m", "not slow and not notebook and not gpu", *tests]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+::\S+)", proc.stdout, flags=re.M)
    return failed, time.perf_counter() - t0


def make_copy(commit, dest):
    if commit:
        archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    else:
        shutil.copytree(REPO, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", "__pycache__", ".hypothesis", "*.egg-info", "runs", ".ipynb_checkpoints"))
    # kernels/ installs as minilm.kernels (setup.cfg package_dir); a link makes the copy importable alone
    if (dest / "kernels").is_dir() and not (dest / "minilm" / "kernels").exists():
        os.symlink(dest / "kernels", dest / "minilm" / "kernels")
    check = subprocess.run([sys.executable, "-c", "import minilm; print(minilm.__file__)"], cwd="/",
                           env=_env(dest), capture_output=True, text=True)
    where = check.stdout.strip()
    if not where.startswith(str(dest)):
        raise SystemExit(f"mutation_test: `import minilm` resolves to {where!r}, not the copy in {dest}")
    return where


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", default="after")
    ap.add_argument("--commit", default=None, help="mutate `git archive COMMIT` instead of the working tree")
    ap.add_argument("--per-area", type=int, default=13, help="sampled generic mutants per area")
    ap.add_argument("--only", default="", help="comma-separated areas")
    ap.add_argument("--timeout-factor", type=float, default=4.0)
    ap.add_argument("--no-named", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the sampled mutants and stop")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    areas = [a for a in AREAS if not args.only or a in args.only.split(",")]
    lines = []

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    with tempfile.TemporaryDirectory(prefix="minilm_mut_") as tmp:
        copy = Path(tmp) / "tree"
        copy.mkdir()
        where = make_copy(args.commit, copy)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True).stdout.strip()
        say(f"mutation test '{args.label}': tree = {'git archive ' + args.commit if args.commit else 'working tree at HEAD ' + head + ' (+ uncommitted changes)'}")
        say(f"import minilm -> {where}; {args.per_area} sampled mutants per area + issue 15's named ones; "
            f"selection = SHA-256 of (file, line text, mutation)")
        results = {}
        for area in areas:
            files, tests = AREAS[area]
            tests = [t for t in tests if (copy / t).exists()]
            files = [f for f in files if (copy / f).exists()]
            pool = [m for f in files for m in list_mutants(copy, f)]
            chosen = sorted(pool, key=lambda m: m["key"])[: args.per_area]
            chosen.sort(key=lambda m: (m["file"], m["line"]))
            named = [] if args.no_named else named_mutants(copy, area)
            if args.list:
                for m in chosen + named:
                    say(f"{area:10s} {m['file']}:{m['line']} {m['kind']}: {m['was']!r} -> {m['now']!r}")
                continue
            failed, base_s = baseline_failures(copy, tests)
            timeout = max(60.0, args.timeout_factor * base_s)
            say(f"\n[{area}] {len(pool)} mutants found, {len(chosen)} sampled; tests: {' '.join(tests)} "
                f"(baseline {base_s:.1f} s" + (f"; deselected, failing before any mutation: {failed}" if failed else "")
                + ")")
            rows = []
            for m in chosen + named:
                if m["source"] is None:
                    rows.append((m, "skipped", 0.0))
                    say(f"  skipped  {m['file']}:{m['line']} {m['kind']}: {m['was']!r}")
                    continue
                target = copy / m["file"]
                original = target.read_text(encoding="utf-8")
                target.write_text(m["source"], encoding="utf-8")
                try:
                    status, secs, _ = run_pytest(copy, tests, timeout, deselect=failed)
                finally:
                    target.write_text(original, encoding="utf-8")
                rows.append((m, status, secs))
                say(f"  {status:8s} {secs:5.1f}s {m['file']}:{m['line']} [{m['kind']}] "
                    f"{m['was']!r:.70} -> {m['now']!r:.70}")
            results[area] = rows
        if args.list:
            return 0
        say("\n" + f"{'area':12s} {'mutants':>7s} {'killed':>7s} {'survived':>9s} {'timeouts':>9s} "
            f"{'kill rate':>9s}   named (issue 15): killed/run")
        tot = [0, 0, 0, 0]
        for area, rows in results.items():
            gen = [r for r in rows if r[0]["kind"] != "named" and not r[0]["kind"].startswith("named")]
            nam = [r for r in rows if r[0]["kind"] == "named"]
            k = sum(s == "killed" for _, s, _ in gen)
            sv = sum(s == "survived" for _, s, _ in gen)
            to = sum(s == "timeout" for _, s, _ in gen)
            tot = [tot[0] + len(gen), tot[1] + k, tot[2] + sv, tot[3] + to]
            rate = (k + to) / len(gen) if gen else float("nan")
            nk = sum(s in ("killed", "timeout") for _, s, _ in nam)
            say(f"{area:12s} {len(gen):7d} {k:7d} {sv:9d} {to:9d} {rate:9.0%}   {nk}/{len(nam)}")
        rate = (tot[1] + tot[3]) / tot[0] if tot[0] else float("nan")
        say(f"{'total':12s} {tot[0]:7d} {tot[1]:7d} {tot[2]:9d} {tot[3]:9d} {rate:9.0%}   (a timeout counts as killed)")
        say("\nsurvivors:")
        for area, rows in results.items():
            for m, s, _ in rows:
                if s == "survived":
                    say(f"  {m['file']}:{m['line']} [{m['kind']}] {m['line_text']!r:.90}: {m['was']!r:.60} -> {m['now']!r:.60}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
