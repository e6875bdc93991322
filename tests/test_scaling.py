"""minilm/scaling.py: the power-law-plus-constant fit, the non-embedding parameter count, bad input."""
import numpy as np
import pytest

from minilm.models import GPT, GPTConfig
from minilm.scaling import PowerLawFit, fit_power_law, leave_one_out, non_embedding_parameters


@pytest.mark.parametrize("a, alpha, c, c_tol", [
    (12.0, 0.3, 1.4, 0.02), (50.0, 0.6, 2.0, 0.02),
    # Kaplan's small exponent: x^-0.076 changes slowly, so a and c trade off against each other and
    # even 0.01% noise moves c by tens of percent (seeds 0-19: up to 32%); alpha stays within 1%
    (40.0, 0.076, 0.5, None)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_recovers_a_known_law_from_noisy_points(a, alpha, c, c_tol, seed):
    rng = np.random.default_rng(seed)
    x = np.geomspace(3e3, 1e6, 8)
    exact = a * x ** -alpha + c
    noisy = exact * (1 + 1e-4 * rng.standard_normal(x.size))                  # 0.01% noise
    fit = fit_power_law(x, noisy)
    assert fit.alpha == pytest.approx(alpha, rel=0.02)
    if c_tol is not None:
        assert fit.c == pytest.approx(c, rel=c_tol)
        assert fit.a == pytest.approx(a, rel=0.05)
    assert np.allclose(fit(x), exact, rtol=1e-3)                                # the curve itself is close


def test_fit_is_exact_on_exact_points_and_beats_nearby_parameters():
    x = np.array([1e2, 3e2, 1e3, 3e3, 1e4])
    loss = 5.0 * x ** -0.5 + 1.0
    fit = fit_power_law(x, loss)
    assert (fit.a, fit.alpha, fit.c) == pytest.approx((5.0, 0.5, 1.0), rel=1e-5)
    assert fit.rss < 1e-12
    # a least-squares optimum: moving any parameter a little makes the squares larger
    noisy = loss + np.array([0.01, -0.02, 0.015, -0.005, 0.01])
    best = fit_power_law(x, noisy)
    for da, dal, dc in [(0.05, 0, 0), (0, 0.005, 0), (0, 0, 0.005), (-0.05, 0, 0), (0, -0.005, 0), (0, 0, -0.005)]:
        moved = PowerLawFit(best.a * (1 + da), best.alpha + dal, best.c + dc, 0.0, 5)
        assert np.sum((moved(x) - noisy) ** 2) > best.rss


def test_fit_keeps_c_non_negative():
    x = np.geomspace(10, 1e4, 6)
    fit = fit_power_law(x, 3.0 * x ** -0.2)                                    # a pure power law: c = 0
    assert fit.c == 0.0 and fit.alpha == pytest.approx(0.2, rel=1e-4)


def test_leave_one_out_gives_one_fit_per_point():
    x = np.geomspace(1e3, 1e5, 5)
    fits = leave_one_out(x, 2.0 * x ** -0.3 + 1.0)
    assert len(fits) == 5 and all(f.alpha == pytest.approx(0.3, rel=1e-3) for f in fits)


@pytest.mark.parametrize("x, loss, message", [
    ([1e3, 1e4], [2.0, 1.5], "at least 3 points"),
    ([1e3, 1e4, 1e4], [2.0, 1.5, 1.4], "3 distinct x"),
    ([0.0, 1e3, 1e4], [2.0, 1.5, 1.4], "must be > 0"),
    ([-5.0, 1e3, 1e4], [2.0, 1.5, 1.4], "must be > 0"),
    ([1e2, 1e3, 1e4], [2.0, 0.0, 1.4], "must be > 0"),
    ([1e2, 1e3, 1e4], [2.0, float("nan"), 1.4], "finite"),
    ([[1e2, 1e3, 1e4]], [[2.0, 1.5, 1.4]], "1-D"),
    ([1e2, 1e3, 1e4, 1e5], [1.0, 1.2, 1.5, 2.0], "does not fall"),
])
def test_bad_input_is_refused_with_a_clear_error(x, loss, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(x, loss)


def test_leave_one_out_needs_four_points():
    with pytest.raises(ValueError, match="too few"):
        leave_one_out([1e2, 1e3, 1e4], [2.0, 1.5, 1.4])


def test_non_embedding_count_matches_a_hand_count():
    config = GPTConfig(vocab_size=11, n_layer=2, n_head=2, n_embd=8, block_size=5, dropout=0.0)
    c = 8
    per_block = (2 * c                      # ln_1 gain and bias
                 + 3 * c * c + 3 * c        # q, k, v projections and biases
                 + c * c + c                # attention output projection
                 + 2 * c                    # ln_2
                 + c * 4 * c + 4 * c        # feed-forward up
                 + 4 * c * c + c)           # feed-forward down
    hand = 2 * per_block + 2 * c            # + the final LayerNorm; no wte (11 x 8), no wpe (5 x 8)
    assert hand == 1760
    assert non_embedding_parameters(config) == hand
    model = GPT(config, generator=np.random.default_rng(0))
    counted = sum(p.numel() for name, p in model.named_parameters() if not name.startswith(("wte", "wpe")))
    assert non_embedding_parameters(model) == counted == hand
    # the tied output layer is the token table: nanoGPT's "non-embedding" count keeps it, Kaplan's does not
    assert model.num_parameters(non_embedding=True) == hand + 11 * 8


def test_non_embedding_count_refuses_other_objects():
    with pytest.raises(TypeError, match="GPT or GPTConfig"):
        non_embedding_parameters({"n_layer": 2})
