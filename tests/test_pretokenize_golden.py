"""Pre-token boundaries of the byte-level BPE, pinned with literal expected outputs.

The brute-force BPE reference in test_tokenizer_bpe.py calls the same
`pretokenize` it checks, so a wrong pattern would pass there. These outputs
are written out by hand from GPT-2's rules (its pattern
's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+):
a word keeps ONE leading space, digits and punctuation runs are their own
pieces, the lowercase English contractions split off, a run of spaces leaves
its last space to the next word, newlines are whitespace like any other.
"""
import pytest

from minilm.tokenizers.bpe_train import pretokenize

GOLDEN = [
    ("Hello world", ["Hello", " world"]),
    (" leading space", [" leading", " space"]),
    ("I'm sure it's what they've said, we'll see; I'd go. You're right",
     ["I", "'m", " sure", " it", "'s", " what", " they", "'ve", " said", ",", " we", "'ll", " see", ";",
      " I", "'d", " go", ".", " You", "'re", " right"]),
    ("DON'T", ["DON", "'", "T"]),                           # contractions are lowercase only, as in GPT-2
    ("abc123 4567 x 89", ["abc", "123", " 4567", " x", " 89"]),
    ("3.14 and -5", ["3", ".", "14", " and", " -", "5"]),
    ("x=1+2", ["x", "=", "1", "+", "2"]),
    ("a  b   c", ["a", " ", " b", "  ", " c"]),              # the last space of a run goes to the word
    ("end with spaces   ", ["end", " with", " spaces", "   "]),
    ("  ", ["  "]),
    ("line one\nline two\n\nend", ["line", " one", "\n", "line", " two", "\n", "\n", "end"]),
    ("tab\there", ["tab", "\t", "here"]),
    ("!!! ... ?", ["!!!", " ...", " ?"]),
    ("snake_case foo_bar", ["snake", "_", "case", " foo", "_", "bar"]),   # "_" is not a letter
    ("Привет мир", ["Привет", " мир"]),
    ("naïve café", ["naïve", " café"]),
    ("日本語のテキスト", ["日本語のテキスト"]),
    ("emoji 😀 ok", ["emoji", " 😀", " ok"]),
]


@pytest.mark.parametrize("text, pieces", GOLDEN, ids=[repr(t)[:24] for t, _ in GOLDEN])
def test_pretokenize_golden(text, pieces):
    assert pretokenize(text) == pieces
    assert "".join(pieces) == text
