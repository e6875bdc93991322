"""Tests for minilm.sampling: temperature, top-k, top-p and the sampler's statistics."""
import numpy as np
import pytest

from minilm.sampling import (_draw_from_weights, _inverse_cdf, apply_temperature, sample_next_token, softmax,
                             top_k_filter, top_p_filter)


def brute_force_top_p(logits, p):
    """Indices kept by nucleus sampling, by trying prefixes of the sorted distribution."""
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = sorted(range(len(logits)), key=lambda i: -probs[i])
    for n in range(1, len(order) + 1):
        if sum(probs[i] for i in order[:n]) >= p:
            return set(order[:n])
    return set(order)


def test_softmax_is_stable_and_handles_minus_inf():
    z = np.array([1000.0, 1001.0, -np.inf, 999.0])
    probs = softmax(z)
    assert np.all(np.isfinite(probs)) and probs[2] == 0.0
    expected = np.exp([-1.0, 0.0, -2.0]) / np.exp([-1.0, 0.0, -2.0]).sum()
    np.testing.assert_allclose(probs[[0, 1, 3]], expected, rtol=1e-12)
    np.testing.assert_allclose(softmax(np.zeros((2, 5))).sum(-1), [1.0, 1.0])


def test_apply_temperature():
    z = np.array([[1.0, -2.0, 4.0]], dtype=np.float32)
    out = apply_temperature(z, 0.5)
    np.testing.assert_array_equal(out, [[2.0, -4.0, 8.0]])
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(z, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(z, -1.0)


def test_greedy_is_argmax():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((8, 50))
    expected = np.argmax(logits, axis=-1)
    np.testing.assert_array_equal(sample_next_token(logits, rng, greedy=True), expected)
    np.testing.assert_array_equal(sample_next_token(logits, rng, temperature=0), expected)
    token = sample_next_token(logits[3], rng, temperature=0.0, top_k=5)
    assert isinstance(token, int) and token == expected[3]
    # top_k=1 is allowed (the smallest k) and leaves only the argmax to draw, at any temperature
    np.testing.assert_array_equal(sample_next_token(logits, rng, temperature=3.0, top_k=1), expected)


def test_top_k_keeps_exactly_k_largest():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((6, 40)).astype(np.float32)
    for k in (1, 3, 17, 40, 100):
        out = top_k_filter(logits, k)
        assert out.shape == logits.shape and out.dtype == np.float32
        kept = np.isfinite(out)
        assert np.all(kept.sum(-1) == min(k, 40))
        for row, mask in zip(logits, kept):
            np.testing.assert_array_equal(np.sort(np.flatnonzero(mask)), np.sort(np.argsort(-row)[:min(k, 40)]))
        np.testing.assert_array_equal(out[kept], logits[kept])       # kept logits unchanged
    with pytest.raises(ValueError, match="k"):
        top_k_filter(logits, 0)


def test_top_k_keeps_ties_at_the_cut():
    out = top_k_filter(np.array([3.0, 1.0, 2.0, 2.0, 0.0]), 2)
    np.testing.assert_array_equal(np.isfinite(out), [True, False, True, True, False])


def test_top_p_hand_computed():
    logits = np.log(np.array([0.05, 0.5, 0.15, 0.3]))
    kept = lambda p: set(np.flatnonzero(np.isfinite(top_p_filter(logits, p))))   # noqa: E731
    assert kept(0.4) == {1}                     # 0.5 alone already >= 0.4
    assert kept(0.5) == {1}
    assert kept(0.75) == {1, 3}                 # 0.5 + 0.3 = 0.8 >= 0.75
    assert kept(0.81) == {1, 3, 2}              # 0.8 < 0.81, add 0.15
    assert kept(0.96) == {0, 1, 2, 3}
    assert kept(1.0) == {0, 1, 2, 3}
    assert kept(1e-9) == {1}                    # always at least one token
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="p must be in"):
            top_p_filter(logits, bad)


def test_top_p_matches_brute_force():
    rng = np.random.default_rng(2)
    for _ in range(60):
        V = int(rng.integers(2, 30))
        logits = rng.standard_normal((3, V)) * rng.uniform(0.2, 4.0)
        p = float(rng.uniform(0.05, 0.99))
        out = top_p_filter(logits, p)
        for row, filtered in zip(logits, out):
            assert set(np.flatnonzero(np.isfinite(filtered))) == brute_force_top_p(row, p)


def test_top_p_keeps_ties_and_ignores_minus_inf():
    out = top_p_filter(np.array([1.0, 1.0, 0.0, -np.inf]), 0.3)
    np.testing.assert_array_equal(np.isfinite(out), [True, True, False, False])


def _check_frequencies(logits, counts, n, **filters):
    """Per-token counts within 4.5 sigma of n * p (binomial), where p is computed independently."""
    z = logits / filters.get("temperature", 1.0)
    keep = np.ones_like(z, dtype=bool)
    if filters.get("top_k"):
        keep &= z >= np.sort(z)[-filters["top_k"]]
    if filters.get("top_p"):
        keep &= np.isin(np.arange(len(z)), list(brute_force_top_p(np.where(keep, z, -np.inf), filters["top_p"])))
    probs = np.where(keep, np.exp(z - z.max()), 0.0)
    probs /= probs.sum()
    expected = n * probs
    sigma = np.sqrt(n * probs * (1 - probs))
    assert np.all(counts[probs == 0] == 0)
    assert np.all(np.abs(counts - expected) <= 4.5 * sigma + 1e-9), (counts, expected)


@pytest.mark.parametrize("filters", [
    dict(temperature=0.7), dict(temperature=1.5), dict(temperature=1.0),
    dict(temperature=1.5, top_k=3), dict(temperature=0.7, top_p=0.8), dict(temperature=1.2, top_k=4, top_p=0.9),
])
def test_sampling_frequencies_match_probabilities(filters):
    logits = np.array([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0])
    n = 100_000
    rng = np.random.default_rng(3)
    tokens = sample_next_token(np.tile(logits, (n, 1)), rng, **filters)          # (n, V) -> (n,)
    assert tokens.shape == (n,) and tokens.dtype == np.int64
    counts = np.bincount(tokens, minlength=len(logits))
    _check_frequencies(logits, counts, n, **filters)


def test_single_row_sampling_frequencies():
    logits = np.array([0.0, 1.0, -np.inf, 0.5], dtype=np.float32)
    rng = np.random.default_rng(4)
    n = 5_000
    counts = np.bincount([sample_next_token(logits, rng, temperature=0.7) for _ in range(n)], minlength=4)
    assert counts[2] == 0
    _check_frequencies(np.array([0.0, 1.0, -np.inf, 0.5]), counts, n, temperature=0.7)


def test_same_seed_same_tokens():
    logits = np.random.default_rng(5).standard_normal((16, 100))
    a = sample_next_token(logits, np.random.default_rng(42), temperature=0.9, top_k=20, top_p=0.9)
    b = sample_next_token(logits, np.random.default_rng(42), temperature=0.9, top_k=20, top_p=0.9)
    c = sample_next_token(logits, np.random.default_rng(43), temperature=0.9, top_k=20, top_p=0.9)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sampled_tokens_respect_filters():
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((500, 30))
    tokens = sample_next_token(logits, rng, temperature=2.0, top_k=5)
    top5 = np.argsort(-logits, axis=-1)[:, :5]
    assert all(t in row for t, row in zip(tokens, top5))


def test_sample_next_token_errors():
    rng = np.random.default_rng(0)
    z = np.zeros(5)
    with pytest.raises(ValueError, match="temperature"):
        sample_next_token(z, rng, temperature=-0.1)
    for bad in (True, "1.0", None):                   # not numbers (True would silently mean 1.0)
        with pytest.raises(TypeError, match="temperature"):
            sample_next_token(z, rng, temperature=bad)
    with pytest.raises(ValueError, match="top_k"):
        sample_next_token(z, rng, top_k=0)
    with pytest.raises(ValueError, match="top_p"):
        sample_next_token(z, rng, top_p=0.0)
    with pytest.raises(ValueError, match="top_p"):
        sample_next_token(z, rng, top_p=1.01)
    with pytest.raises(TypeError, match="Generator"):
        sample_next_token(z, np.random.RandomState(0))
    with pytest.raises(ValueError, match="shape"):
        sample_next_token(np.zeros((2, 3, 4)), rng)
    with pytest.raises(ValueError, match="NaN"):
        sample_next_token(np.array([0.0, np.nan]), rng)
    with pytest.raises(ValueError, match="all -inf"):
        sample_next_token(np.array([[0.0, 1.0], [-np.inf, -np.inf]]), rng)


def test_inverse_cdf_edges():
    w = np.array([[1.0, 2.0, 0.0, 3.0, 0.0, 0.0]])
    pick = lambda r: int(_inverse_cdf(w, np.array([r]))[0])   # noqa: E731
    assert [pick(r) for r in (0.0, 0.99, 1.0, 2.99, 3.0, 5.99)] == [0, 0, 1, 1, 3, 3]
    assert pick(6.0) == 3 and pick(7.5) == 3          # r at or past the total: last token with weight


@pytest.mark.parametrize("block", [1, 3, 4, 7])
def test_blocked_draw_equals_single_level(block):
    rng = np.random.default_rng(7)
    w = rng.random((50, 23))
    w[:, [0, 5, 6, 21, 22]] = 0.0                       # zero weights, also at the end of the row
    u = rng.random((40, 50))
    for uu in u:
        a = _draw_from_weights(w, uu, block=block)      # several blocks, padding when 23 % block != 0
        b = _draw_from_weights(w, uu, block=10_000)     # one running sum over the row
        np.testing.assert_array_equal(a, b)
        assert np.all(w[np.arange(50), a] > 0)


def test_blocked_draw_frequencies():
    logits = np.array([2.0, 1.0, 0.5, 0.0, -np.inf, -0.5, -1.0, -np.inf, -np.inf])
    n = 100_000
    weights = np.tile(np.exp(logits - logits.max()), (n, 1))                   # (n, V)
    tokens = _draw_from_weights(weights, np.random.default_rng(8).random(n), block=4)
    _check_frequencies(logits, np.bincount(tokens, minlength=len(logits)), n)


def test_large_vocabulary_uses_blocks_and_matches_frequencies():
    # V above the block size: a few likely tokens spread across different blocks
    V = 1100                                  # the default block is 1024 tokens: two blocks
    logits = np.full(V, -np.inf)
    hot = [3, 700, 1023, 1024, 1099]
    logits[hot] = [0.0, 1.0, -0.5, 0.3, 0.8]
    n = 10_000
    tokens = sample_next_token(np.tile(logits, (n, 1)), np.random.default_rng(9), temperature=1.3)
    counts = np.bincount(tokens, minlength=V)
    assert counts.sum() == counts[hot].sum()
    _check_frequencies(logits[hot], counts[hot], n, temperature=1.3)


def test_tiny_temperature_acts_like_greedy_without_nan():
    rng = np.random.default_rng(10)
    logits = rng.standard_normal((4, 30)).astype(np.float32) * 50
    for t in (1e-3, 1e-30, 1e-50, 1e-320):
        tokens = sample_next_token(logits, rng, temperature=t)
        np.testing.assert_array_equal(tokens, np.argmax(logits, axis=-1))
    assert np.all(np.isfinite(apply_temperature(np.float32([0.0, -1.0]), 1e-50)[:1]))
