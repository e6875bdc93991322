"""BERT's "basic tokenizer": text normalisation and the split into words.

This is the first half of BERT's tokenizer (Devlin et al. 2019, "BERT: Pre-training
of Deep Bidirectional Transformers", section 3 and the reference code's
``BasicTokenizer``); the second half, WordPiece, is in ``wordpiece.py``.
It follows the Hugging Face ``tokenizers`` implementation (BertNormalizer +
BertPreTokenizer), which our fixtures were generated with, step by step:

1. clean:      drop NUL, U+FFFD and control / format / private-use characters
               (Unicode categories Cc, Cf, Co, Cs; but tab, newline and carriage
               return count as whitespace), and turn every whitespace character
               (including no-break space, U+2028, U+3000 ...) into a plain space.
2. CJK:        put spaces around every CJK ideograph, so each becomes its own word.
3. accents:    (uncased vocabularies) decompose to NFD and drop the combining marks
               (category Mn):  "café" -> "cafe",  "Ångström" -> "Angstrom".
4. lower case: character by character (so a final capital sigma becomes "σ", not "ς").
5. split:      on whitespace (removed), and around every punctuation character
               (kept as its own word).  BERT's punctuation is all non-alphanumeric
               printable ASCII (so "$", "+", "^", "`" count) plus Unicode P* categories.

Where the Python BERT implementations and the Rust one differ, we follow Rust: the
deleted categories are exactly Cc, Cf, Co, Cs (unassigned code points, Cn, are kept);
Unicode's White_Space property (so also U+2028, U+2029) defines whitespace, not just
category Zs; the CJK range list has 0x2B920 where the Python code has 0x2B820.

One difference remains, on purpose: the Rust library's Unicode category tables are
older (about Unicode 9) than Python's, so characters that Unicode assigned later
(e.g. the punctuation U+2E4F, the combining mark U+10F46) are classified by their
real category here.  On characters that already existed in Unicode 3.2, 40,000
random strings tokenized identically in both.
"""

from __future__ import annotations

import re
import unicodedata

# Ranges of the "CJK Unified Ideographs" blocks (and compatibility ideographs) that
# BERT splits one per token.  Hangul and kana are not in them: they stay in words.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)

_CONTROL_CATEGORIES = frozenset(("Cc", "Cf", "Co", "Cs"))


def is_cjk_ideograph(char: str) -> bool:
    cp = ord(char)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def is_control(char: str) -> bool:
    """Control/format/private-use characters that BERT deletes (tab, LF, CR are whitespace instead)."""
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in _CONTROL_CATEGORIES


def is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or char.isspace()


def is_punctuation(char: str) -> bool:
    """BERT's punctuation: printable non-alphanumeric ASCII, or any Unicode P* category."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


class _CharMap(dict):
    """A memo of ``rule(char)`` per character: ``"".join([m[c] for c in s])`` maps a string fast."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule

    def __missing__(self, char: str) -> str:
        value = self.rule(char)
        self[char] = value
        return value


def _clean_rule(char: str) -> str:
    """Step 1 for one character."""
    if char == "\x00" or char == "\ufffd" or is_control(char):
        return ""
    if is_whitespace(char):
        return " "
    return char


def _clean_and_space_cjk_rule(char: str) -> str:
    """Steps 1 and 2 for one character."""
    char = _clean_rule(char)
    if char and is_cjk_ideograph(char):
        return f" {char} "
    return char


def _accent_rule(char: str) -> str:
    return "" if unicodedata.category(char) == "Mn" else char


_CLEAN = _CharMap(_clean_rule)
_CLEAN_AND_SPACE_CJK = _CharMap(_clean_and_space_cjk_rule)
_STRIP_ACCENTS = _CharMap(_accent_rule)
# Within ASCII every printable character that is not a letter or digit is punctuation,
# so an ASCII word splits with one regular expression.
_ASCII_WORD_SPLIT = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9]")


def normalize(text: str, lowercase: bool = True, strip_accents: bool | None = None,
              tokenize_chinese_chars: bool = True) -> str:
    """Steps 1-4.  ``strip_accents=None`` means "strip when lowercasing", as in BERT."""
    if strip_accents is None:
        strip_accents = lowercase
    clean = _CLEAN_AND_SPACE_CJK if tokenize_chinese_chars else _CLEAN
    text = "".join([clean[c] for c in text])
    if strip_accents and not text.isascii():
        text = unicodedata.normalize("NFD", text)
        text = "".join([_STRIP_ACCENTS[c] for c in text])
    if lowercase:
        # str.lower() would make a word-final "Σ" into "ς"; BERT lowers each character alone.
        text = text.replace("\u03a3", "\u03c3").lower()
    return text


def split_words(text: str) -> list[str]:
    """Step 5: whitespace-separated words, with punctuation characters split off."""
    words: list[str] = []
    for chunk in text.split():
        if chunk.isascii():
            words.extend(_ASCII_WORD_SPLIT.findall(chunk))
            continue
        start = 0
        for i, char in enumerate(chunk):
            if is_punctuation(char):
                if start < i:
                    words.append(chunk[start:i])
                words.append(char)
                start = i + 1
        if start < len(chunk):
            words.append(chunk[start:])
    return words


def basic_tokenize(text: str, lowercase: bool = True, strip_accents: bool | None = None,
                   tokenize_chinese_chars: bool = True) -> list[str]:
    """Normalise then split: the words WordPiece will cut into pieces."""
    return split_words(normalize(text, lowercase, strip_accents, tokenize_chinese_chars))
