"""Numbers 0..999,999 written out in English, Chinese and German, and the train/held-out split.

The translation task of `minilm.apps.translate`: read the English words,
write the Chinese numeral or the German number word. Every writer here is a
pure function of the number, so the data set is exact and reproducible.

English (British, lower case, hyphen in 21..99):
    "and" goes before the last two digits of a group of three when that group
    has hundreds and a non-zero rest: 312 -> "three hundred and twelve".
    After "thousand", "and" comes when the rest is 1..99:
    100,005 -> "one hundred thousand and five", 1,200 -> "one thousand two hundred".
    (So the issue's "three hundred and twelve thousand and five" is 312,005.)

Chinese (standard numerals, 小写 digits):
    Groups of four digits: the upper group (1..99) takes 万, the lower group follows.
    二 throughout (not the colloquial 两 before 百/千/万).
    A run of zeros between non-zero digits is read as one 零, also across the 万
    boundary: 1,001 -> 一千零一, 100,005 -> 十万零五, 312,005 -> 三十一万二千零五.
    Trailing zeros are silent: 120,000 -> 十二万.
    A leading 1 of the tens is dropped only at the very start of the number:
    10 -> 十, 100,000 -> 十万, 110,000 -> 十一万; elsewhere it is spoken:
    110 -> 一百一十, 10,010 -> 一万零一十.

German (lower case, one word; Duden rules):
    "eins" alone or at the end (101 -> einhunderteins), "ein" before "und",
    "hundert" and "tausend" (21 -> einundzwanzig, 1,000 -> eintausend).
    This module always says the "ein" of 100 and 1,000 (einhundert, eintausend,
    100,005 -> einhunderttausendfünf), the unambiguous form written on cheques.
    sechzehn, siebzehn, sechzig, siebzig drop the -s/-en; dreißig has ß.
    `german_pieces` returns the same word cut into its morphemes (drei|hundert|
    zwölf|tausend|fünf), which `translate` uses as German tokens.

Split (`Split`): a band of numbers (default 600,000..609,999) and a seeded set
of 1,000 numbers drawn uniformly from the rest are held out; training draws
only from what is left. The random held-out set measures memorisation vs
learning the rule; the band measures generalisation to a region whose
"six hundred thousand ..." prefix the model never saw in training.
"""
from dataclasses import dataclass
from functools import cached_property

import numpy as np

MAX_NUMBER = 999_999

_EN_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
            "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
            "nineteen"]
_EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

_ZH_DIGITS = "零一二三四五六七八九"

_DE_ONES = ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn",
            "elf", "zwölf", "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn", "achtzehn",
            "neunzehn"]
_DE_TENS = ["", "", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig", "neunzig"]

# Every German piece german_pieces can emit: the German token vocabulary.
GERMAN_PIECES = tuple(dict.fromkeys(_DE_ONES + ["ein"] + _DE_TENS[2:] + ["und", "hundert", "tausend"]))


def _check(n, where):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"{where}: expected an integer in 0..{MAX_NUMBER:,}, got {n!r}")
    return int(n)


# ----------------------------------------------------------------------------- English
def _en_below_100(n):
    if n < 20:
        return _EN_ONES[n]
    tens, ones = divmod(n, 10)
    return _EN_TENS[tens] + (f"-{_EN_ONES[ones]}" if ones else "")


def _en_below_1000(n):
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return _en_below_100(rest)
    words = f"{_EN_ONES[hundreds]} hundred"
    return f"{words} and {_en_below_100(rest)}" if rest else words


def english(n):
    """312005 -> 'three hundred and twelve thousand and five' (British "and", see the module docstring)."""
    n = _check(n, "english")
    thousands, rest = divmod(n, 1000)
    if not thousands:
        return _en_below_1000(rest)
    words = f"{_en_below_1000(thousands)} thousand"
    if not rest:
        return words
    return f"{words} and {_en_below_100(rest)}" if rest < 100 else f"{words} {_en_below_1000(rest)}"


# ----------------------------------------------------------------------------- Chinese
def _zh_group(n, leading):
    """A group 1..9999 as 千/百/十 digits; zero runs inside become one 零, trailing zeros vanish.

    leading: this group starts the number, so a leading 一十 is said 十.
    """
    digits = [n // 1000, n // 100 % 10, n // 10 % 10, n % 10]
    units = ["千", "百", "十", ""]
    out, pending_zero, started = [], False, False
    for d, unit in zip(digits, units):
        if d == 0:
            pending_zero = started                      # only zeros after a digit can need a 零
            continue
        if pending_zero:
            out.append("零")
            pending_zero = False
        if not (unit == "十" and d == 1 and leading and not started):
            out.append(_ZH_DIGITS[d])
        out.append(unit)
        started = True
    return "".join(out)


def chinese(n):
    """312005 -> '三十一万二千零五' (conventions in the module docstring)."""
    n = _check(n, "chinese")
    if n == 0:
        return "零"
    wan, rest = divmod(n, 10_000)
    if not wan:
        return _zh_group(rest, leading=True)
    out = _zh_group(wan, leading=True) + "万"
    if rest:
        # a gap in front of the lower group (its 千 digit is 0) is read as one 零
        out += ("零" if rest < 1000 else "") + _zh_group(rest, leading=False)
    return out


# ----------------------------------------------------------------------------- German
def _de_below_100(n, final):
    """Pieces of 1..99; final: nothing follows, so 1 is 'eins' (else 'ein', as in eintausend)."""
    if n == 1:
        return ["eins" if final else "ein"]
    if n < 20:
        return [_DE_ONES[n]]
    tens, ones = divmod(n, 10)
    if not ones:
        return [_DE_TENS[tens]]
    return ["ein" if ones == 1 else _DE_ONES[ones], "und", _DE_TENS[tens]]


def _de_below_1000(n, final):
    hundreds, rest = divmod(n, 100)
    pieces = []
    if hundreds:
        pieces += ["ein" if hundreds == 1 else _DE_ONES[hundreds], "hundert"]
    if rest:
        pieces += _de_below_100(rest, final)
    return pieces


def german_pieces(n):
    """312005 -> ['drei', 'hundert', 'zwölf', 'tausend', 'fünf']: the morphemes of `german(n)`."""
    n = _check(n, "german_pieces")
    if n == 0:
        return ["null"]
    thousands, rest = divmod(n, 1000)
    pieces = _de_below_1000(thousands, final=False) + ["tausend"] if thousands else []
    return pieces + (_de_below_1000(rest, final=True) if rest else [])


def german(n):
    """312005 -> 'dreihundertzwölftausendfünf' (conventions in the module docstring)."""
    return "".join(german_pieces(n))


WRITERS = {"en": english, "zh": chinese, "de": german}


# ----------------------------------------------------------------------------- the split
@dataclass(frozen=True)
class Split:
    """Which numbers are held out. Split(seed=0, n_test=1000, band=(600_000, 610_000)).

    band: [low, high) held out as a block (generalisation to an unseen region).
    test: n_test numbers drawn without replacement, uniformly from 0..999,999
    outside the band, with numpy's default_rng(seed): the same every run.
    """

    seed: int = 0
    n_test: int = 1000
    band: tuple = (600_000, 610_000)

    def __post_init__(self):
        low, high = self.band
        if not 0 <= low < high <= MAX_NUMBER + 1:
            raise ValueError(f"Split: band must satisfy 0 <= low < high <= {MAX_NUMBER + 1}, got {self.band}")
        if self.n_test < 0 or self.n_test > MAX_NUMBER + 1 - (high - low):
            raise ValueError(f"Split: n_test={self.n_test} does not fit outside the band {self.band}")

    def in_band(self, n):
        """Boolean (array) : n lies in the held-out band."""
        return (np.asarray(n) >= self.band[0]) & (np.asarray(n) < self.band[1])

    @cached_property
    def test_numbers(self):
        """The held-out test numbers, sorted, int64 (n_test of them); computed once per Split."""
        rng = np.random.default_rng(self.seed)
        low, high = self.band
        picks = rng.choice(MAX_NUMBER + 1 - (high - low), size=self.n_test, replace=False)  # an index outside
        picks = np.where(picks >= low, picks + (high - low), picks)                       # the band -> number
        picks = np.sort(picks).astype(np.int64)
        picks.flags.writeable = False                                          # shared: nobody may edit it
        return picks

    def band_numbers(self, n=1000, seed=1):
        """n numbers of the band (all of it if n is None), drawn with their own seed, sorted."""
        all_band = np.arange(*self.band)
        if n is None or n >= all_band.size:
            return all_band
        return np.sort(np.random.default_rng(seed).choice(all_band, size=n, replace=False))

    def is_held_out(self, n):
        """Boolean (array): n is in the band or in the test set (never used for training)."""
        return self.in_band(n) | np.isin(n, self.test_numbers)

    def training_sampler(self, seed=0):
        """A function batch(size) -> int64 training numbers, drawn fresh each call.

        The digit count d is uniform over 1..6, then the number is uniform among
        the d-digit ones (0 counts as one digit), so "seven" is seen as often as
        all six-digit numbers together would let it; held-out numbers are redrawn.
        """
        rng = np.random.default_rng(seed)
        test = self.test_numbers
        low_of = np.array([0, 10, 100, 1000, 10_000, 100_000])

        def batch(size):
            out = np.empty(0, dtype=np.int64)
            while out.size < size:
                d = rng.integers(0, 6, size=2 * size)
                n = low_of[d] + (rng.random(2 * size) * (low_of[d] * 9 + (d == 0) * 10)).astype(np.int64)
                keep = ~(self.in_band(n) | np.isin(n, test))
                out = np.concatenate([out, n[keep]])
            return out[:size]

        return batch
