"""Completing Python functions, scored by whether the result parses.

The task (the sampled-completion scoring of Chen et al. 2021, "Evaluating Large
Language Models Trained on Code" (Codex), with a syntax check in place of unit
tests): give the model a function's ``def`` line and docstring from a file it
never saw, let it write the body, cut the body where the function ends, and
ask ``ast.parse`` whether ``def + docstring + body`` is valid Python. A model
that has learned indentation, brackets, string quotes and block structure
scores high; one that has not writes text that looks like code but does not
parse.

Three pieces, each small:

1. ``split_files``: a held-out split of files that does not depend on their order:
   a file is held out when the SHA-256 of its path falls in the lowest
   ``val_fraction`` of the hash range. Adding or removing other files never moves
   a file from one side to the other, and the held-out files are spread over the
   whole library (sorted order would hold out only the last packages).
2. ``extract_prompts``: via ``ast``, every function with a docstring and at least
   one statement after it; the prompt is the source from the ``def`` line through
   the docstring's last line (decorators left out, original indentation kept).
3. ``cut_completion``: the cut rule. The model's text continues the function body,
   and **the body ends before the first non-blank line indented at the ``def``'s
   own column or less** (a sibling method, the next top-level statement, a
   comment at column 0). If the text never dedents (the token budget ran out
   first), it is cut after its last newline, so a half-written line is dropped
   and what is left ends at the end of a statement or a block header. The rule
   only looks at indentation, never at whether the result parses, so it cannot
   flatter the score.

``parses(prompt, body)`` strips the ``def``'s indentation, runs ``ast.parse`` and asks for
at least one statement after the docstring (an empty body would parse on the docstring alone);
``parse_rate`` is the fraction of completions that parse.
"""
from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Prompt", "Cut", "is_held_out", "split_files", "stdlib_sources", "extract_prompts", "score_continuation",
           "cut_completion", "parses", "parse_rate"]


@dataclass(frozen=True)
class Prompt:
    """A completion prompt: ``text`` is the def line(s) and docstring, ending with a newline.

    path: the file it came from; name: the function's name; start: the character offset
    of ``text`` in the file (the text before it is context a model may also see);
    indent: the ``def``'s column; reference: the real body, for comparison.
    """
    path: str
    name: str
    text: str
    start: int
    indent: int
    reference: str


@dataclass(frozen=True)
class Cut:
    """A completion cut by the rule: ``body`` is what is kept; ``closed`` says the text dedented
    (the function ended inside the budget) rather than being cut at its last newline."""
    body: str
    closed: bool


# ----- 1. the held-out split ----------------------------------------------------------------
def is_held_out(path: str, val_fraction: float) -> bool:
    """True when the file belongs to the held-out side: sha256(path) / 2**64 < val_fraction.

    Uses the path only (as a POSIX string), so the decision is the same on every machine
    and for every ordering or subset of files.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"is_held_out: val_fraction must be in (0, 1), got {val_fraction!r}")
    digest = hashlib.sha256(str(path).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < val_fraction


def _hash_key(path: str) -> bytes:
    return hashlib.sha256(str(path).encode("utf-8")).digest()


def split_files(files, val_fraction: float = 0.1):
    """Split ``[(path, text), ...]`` into (train, held_out), each in a deterministic shuffled order.

    Both lists are sorted by the hash of the path: taking the first N characters of either
    gives a mix of the whole library rather than its alphabetically first packages.
    """
    files = list(files)
    paths = [p for p, _ in files]
    if len(set(paths)) != len(paths):
        raise ValueError("split_files: the same path appears twice")
    ordered = sorted(files, key=lambda f: _hash_key(f[0]))
    train = [f for f in ordered if not is_held_out(f[0], val_fraction)]
    held_out = [f for f in ordered if is_held_out(f[0], val_fraction)]
    return train, held_out


def stdlib_sources():
    """``[(relative POSIX path, text), ...]`` of the standard library's .py files (the files the
    ``stdlib`` corpus is made of: no tests, no site-packages), in sorted path order."""
    import sysconfig

    from minilm.data.corpora import _read_utf8, _stdlib_files   # the corpus's own file list and reader

    root = Path(sysconfig.get_paths()["stdlib"])
    return [(p.relative_to(root).as_posix(), _read_utf8(p)) for p in _stdlib_files(root)]


# ----- 2. prompts ---------------------------------------------------------------------------
def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def extract_prompts(source: str, path: str = "<string>") -> list[Prompt]:
    """Every function (methods and nested ones too) with a docstring and a body after it.

    Functions whose prompt has a non-blank line indented less than the ``def`` (a docstring
    written at column 0 inside a method) are skipped: the prompt could not be dedented.
    A file that does not parse gives no prompts. Returned in source order.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    prompts = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if ast.get_docstring(node, clean=False) is None or len(node.body) < 2:
            continue
        first, doc_end = node.lineno - 1, node.body[0].end_lineno          # 0-based first line, 1-based last
        body_end = node.end_lineno
        if node.body[1].lineno <= doc_end:        # `"""doc"""; x = 1` on one line: no clean cut
            continue
        text_lines = lines[first:doc_end]
        indent = node.col_offset
        if any(line.strip() and _indent_of(line) < indent for line in text_lines):
            continue
        text = "".join(text_lines)
        if not text.endswith("\n"):
            continue
        prompts.append(Prompt(path=path, name=node.name, text=text, start=offsets[first], indent=indent,
                              reference="".join(lines[doc_end:body_end])))
    return sorted(prompts, key=lambda p: p.start)


# ----- 3. the cut rule and the scorer -------------------------------------------------------
def cut_completion(completion: str, indent: int) -> Cut:
    """Keep the function body at the start of ``completion`` (the text after the docstring line).

    The body ends before the first non-blank line whose indentation is ``indent`` (the def's
    column) or less; if none comes, the text is cut after its last newline. Tabs count as
    one column each (the standard library indents with spaces).
    """
    if indent < 0:
        raise ValueError(f"cut_completion: indent must be >= 0, got {indent}")
    kept = []
    for line in completion.splitlines(keepends=True):
        if line.strip() and _indent_of(line) <= indent:
            return Cut("".join(kept), closed=True)
        kept.append(line)
    body = "".join(kept)
    return Cut(body[: body.rfind("\n") + 1], closed=False)


def _dedent(text: str, indent: int) -> str:
    """Remove the def's indentation from every line that has it (blank lines may have less)."""
    return "".join(line[indent:] if line[:indent].strip() == "" else line
                   for line in text.splitlines(keepends=True))


def parses(prompt_text: str, body: str, indent: int = 0) -> bool:
    """True when ``prompt + body`` (the def's indentation removed) is valid Python for ``ast.parse``
    and the function has at least one statement after its docstring.

    Why the second condition: the docstring alone is a valid body, so an empty completion
    (a model that dedents at once) would otherwise always parse.
    """
    try:
        tree = ast.parse(_dedent(prompt_text + body, indent))
    except (SyntaxError, ValueError):        # ValueError: a NUL byte in the text
        return False
    func = tree.body[0] if tree.body else None
    return isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)) and len(func.body) >= 2


def parse_rate(prompts, bodies) -> float:
    """The fraction of (prompt, cut body) pairs that parse; ``prompts`` are ``Prompt``s."""
    prompts, bodies = list(prompts), list(bodies)
    if len(prompts) != len(bodies) or not prompts:
        raise ValueError(f"parse_rate: need as many bodies as prompts (and at least one), "
                         f"got {len(prompts)} prompts and {len(bodies)} bodies")
    return sum(parses(p.text, b, p.indent) for p, b in zip(prompts, bodies)) / len(prompts)


def score_continuation(prompt: Prompt, generated: str) -> tuple[Cut, bool]:
    """Cut and score text a model wrote after ``prompt.text`` WITHOUT its final newline.

    Why the prompt stops before its newline: byte-level BPE's pre-tokenizer joins a newline
    with the next line's indentation ("\\n        " is one pre-token), so in training the model
    never saw a bare "\\n" before indented code; a prompt ending in "\\n" would put it off its
    track (the "token healing" problem). So both models write the newline themselves. Text the
    model adds on the docstring's line before that newline stays with the prompt (and must parse
    with it); no newline at all scores as a failure. Returns (the cut body, parses).
    """
    newline = generated.find("\n")
    if newline < 0:
        return Cut("", closed=False), False
    head, rest = generated[:newline], generated[newline + 1:]
    cut = cut_completion(rest, prompt.indent)
    return cut, parses(prompt.text[:-1] + head + "\n", cut.body, prompt.indent)
