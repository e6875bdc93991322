"""Number words in English, Chinese and German against hand-checked cases; the held-out split."""
import numpy as np
import pytest

from minilm.apps import number_words as nw
from minilm.apps import translate as tr

# (number, English, Chinese, German), each checked by hand against the conventions in number_words.
CASES = [
    (0, "zero", "零", "null"),
    (7, "seven", "七", "sieben"),
    (10, "ten", "十", "zehn"),
    (11, "eleven", "十一", "elf"),
    (12, "twelve", "十二", "zwölf"),
    (16, "sixteen", "十六", "sechzehn"),
    (17, "seventeen", "十七", "siebzehn"),
    (20, "twenty", "二十", "zwanzig"),
    (21, "twenty-one", "二十一", "einundzwanzig"),
    (30, "thirty", "三十", "dreißig"),
    (67, "sixty-seven", "六十七", "siebenundsechzig"),
    (100, "one hundred", "一百", "einhundert"),
    (101, "one hundred and one", "一百零一", "einhunderteins"),
    (110, "one hundred and ten", "一百一十", "einhundertzehn"),
    (999, "nine hundred and ninety-nine", "九百九十九", "neunhundertneunundneunzig"),
    (1_000, "one thousand", "一千", "eintausend"),
    (1_001, "one thousand and one", "一千零一", "eintausendeins"),
    (1_200, "one thousand two hundred", "一千二百", "eintausendzweihundert"),
    (10_010, "ten thousand and ten", "一万零一十", "zehntausendzehn"),
    (21_000, "twenty-one thousand", "二万一千", "einundzwanzigtausend"),
    (100_000, "one hundred thousand", "十万", "einhunderttausend"),
    (100_005, "one hundred thousand and five", "十万零五", "einhunderttausendfünf"),
    (100_100, "one hundred thousand one hundred", "十万零一百", "einhunderttausendeinhundert"),
    (101_000, "one hundred and one thousand", "十万一千", "einhunderteintausend"),
    (110_000, "one hundred and ten thousand", "十一万", "einhundertzehntausend"),
    (312_005, "three hundred and twelve thousand and five", "三十一万二千零五",
     "dreihundertzwölftausendfünf"),
    (999_999, "nine hundred and ninety-nine thousand nine hundred and ninety-nine", "九十九万九千九百九十九",
     "neunhundertneunundneunzigtausendneunhundertneunundneunzig"),
]


@pytest.mark.parametrize("n, en, zh, de", CASES)
def test_hand_checked_cases(n, en, zh, de):
    assert (nw.english(n), nw.chinese(n), nw.german(n)) == (en, zh, de)


def test_bad_numbers_are_refused_by_name():
    for bad in (-1, 1_000_000, 3.0, True, "7"):
        with pytest.raises(ValueError, match="english: expected an integer in 0..999,999"):
            nw.english(bad)


def test_german_pieces_round_trip_and_vocabularies_cover_the_range():
    """Longest-match tokenisation of german(n) gives back german_pieces(n); every token is in a vocabulary."""
    rng = np.random.default_rng(0)
    for n in np.concatenate([np.arange(1200), rng.integers(0, 1_000_000, 3000)]):
        n = int(n)
        assert tr.german_tokens(nw.german(n)) == nw.german_pieces(n)
        tr.SRC_VOCAB.encode(tr.english_tokens(nw.english(n)))
        tr.TGT_VOCAB.encode(list(nw.chinese(n)))


def test_chinese_zero_runs_collapse_to_one_ling():
    rng = np.random.default_rng(1)
    for n in rng.integers(1, 1_000_000, 2000):
        zh = nw.chinese(int(n))
        assert "零零" not in zh and not zh.endswith("零") and not zh.startswith("一十")


def test_split_is_deterministic_and_disjoint():
    a, b = nw.Split(), nw.Split()
    assert np.array_equal(a.test_numbers, b.test_numbers) and len(a.test_numbers) == 1000
    assert not a.in_band(a.test_numbers).any()
    assert not np.array_equal(nw.Split(seed=1).test_numbers, a.test_numbers)
    band = a.band_numbers(1000)
    assert np.array_equal(band, b.band_numbers(1000)) and a.in_band(band).all()
    s1, s2 = a.training_sampler(seed=3), b.training_sampler(seed=3)
    assert np.array_equal(s1(500), s2(500))


def test_held_out_numbers_never_appear_in_training():
    split = nw.Split(n_test=1000)
    drawn = split.training_sampler(seed=0)(200_000)
    assert not split.is_held_out(drawn).any()
    assert drawn.min() >= 0 and drawn.max() <= nw.MAX_NUMBER
    # log-uniform over digit counts: one-digit numbers are about as common as six-digit ones
    counts = np.bincount([len(str(n)) for n in drawn[:6000]], minlength=7)[1:]
    assert counts.min() > 800


def test_word_by_word_baseline_gets_vocabulary_but_not_order():
    assert tr.word_by_word(nw.english(312_005), "de") == "dreihundertzwölftausendfünf"    # German: in order
    assert tr.word_by_word(nw.english(312_005), "zh") == "三百十二千五"                      # not 三十一万二千零五
    assert tr.word_by_word(nw.english(21), "de") == "zwanzigeins"                        # not einundzwanzig
