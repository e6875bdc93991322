"""The code-completion task: a deterministic held-out split, prompts from ast, the cut rule, the parse scorer."""
import pytest

from minilm.apps.code_completion import (cut_completion, extract_prompts, is_held_out, parse_rate, parses,
                                         score_continuation, split_files)

MODULE = '''"""A module."""
import os


def top(a, b=1):
    """Add two numbers."""
    return a + b


class Box:
    """A box."""

    def method(self,
               x):
        """Multi-line
        docstring.
        """
        y = x * 2
        return y

    def no_body(self):
        """Only a docstring."""

    @property
    def decorated(self):
        """Decorators are not part of the prompt."""
        return 3


def no_doc():
    return 1
'''


def test_split_is_deterministic_disjoint_and_independent_of_order():
    files = [(f"pkg{i % 7}/mod{i}.py", f"x = {i}\n") for i in range(300)]
    train, held = split_files(files, 0.2)
    assert {p for p, _ in train}.isdisjoint({p for p, _ in held})
    assert len(train) + len(held) == 300
    assert 30 <= len(held) <= 90                               # about 20% (hash-based)
    train2, held2 = split_files(list(reversed(files[:150])) + files[150:], 0.2)
    assert train2 == train and held2 == held                  # same split, same order, whatever the input order
    # a file's side depends on its path alone: dropping other files does not move it
    _, held_sub = split_files(files[:100], 0.2)
    assert {p for p, _ in held_sub} == {p for p, _ in held if int(p.split("mod")[1][:-3]) < 100}
    assert all(is_held_out(p, 0.2) for p, _ in held)
    with pytest.raises(ValueError, match="val_fraction"):
        is_held_out("a.py", 1.5)
    with pytest.raises(ValueError, match="twice"):
        split_files([("a.py", ""), ("a.py", "")])


def test_prompts_are_def_plus_docstring_of_functions_with_a_body():
    prompts = extract_prompts(MODULE, "m.py")
    assert [p.name for p in prompts] == ["top", "method", "decorated"]   # no_body and no_doc are skipped
    top, method, decorated = prompts
    assert top.text == 'def top(a, b=1):\n    """Add two numbers."""\n' and top.indent == 0
    assert top.reference == "    return a + b\n"
    assert method.text.startswith("    def method(self,\n               x):\n") and method.text.endswith('"""\n')
    assert method.indent == 4 and MODULE[method.start:].startswith(method.text)
    assert decorated.text.startswith("    def decorated") and "@property" not in decorated.text
    assert extract_prompts("def broken(:\n") == []                       # a file that does not parse


def test_cut_keeps_a_complete_block_and_drops_what_follows():
    body = "    if x:\n        return 1\n\n    return 2\n"
    cut = cut_completion(body + "\ndef next_function():\n    pass\n", indent=0)
    assert cut.body == body + "\n" and cut.closed
    assert parses("def f(x):\n    \"\"\"Doc.\"\"\"\n", cut.body)
    # a method: the body ends at the next line at the method's own column
    cut = cut_completion("        return self.x\n    def other(self):\n", indent=4)
    assert cut.body == "        return self.x\n" and cut.closed
    assert parses('    def get(self):\n        """Doc."""\n', cut.body, indent=4)


def test_cut_drops_a_half_written_line_when_the_budget_runs_out():
    cut = cut_completion("    x = 1\n    y = (x +", indent=0)
    assert cut.body == "    x = 1\n" and not cut.closed
    assert cut_completion("    x = (", indent=0).body == ""


def test_what_does_not_parse_fails():
    prompt = 'def f():\n    """Doc."""\n'
    assert not parses(prompt, '    s = "unterminated\n')                # an unterminated string
    assert not parses(prompt, "    if x:\n")                              # a block header with no block
    assert not parses(prompt, "")                                         # an empty body: the docstring alone
    assert not parses(prompt, "        x = 1\n")                         # unexpected indent
    assert parses(prompt, "    pass\n")
    cut = cut_completion('    s = """never closed\nprint(s)\n', indent=0)   # the rule cuts inside the string
    assert cut.closed and not parses(prompt, cut.body)


def test_score_continuation_and_parse_rate():
    (p,) = [q for q in extract_prompts(MODULE, "m.py") if q.name == "top"]
    cut, ok = score_continuation(p, "\n    return a - b\n\n\nclass Junk(:\n")
    assert ok and cut.body == "    return a - b\n\n\n" and cut.closed
    assert score_continuation(p, "  # more docstring line")[1] is False      # never wrote a newline
    assert parse_rate([p, p], ["    return 1\n", "    return (\n"]) == 0.5
    with pytest.raises(ValueError, match="as many"):
        parse_rate([p], [])
