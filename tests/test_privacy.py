"""minilm.privacy: exact canary ranking, per-example gradients, clipping, and the RDP accountant."""
import math

import numpy as np
import pytest

import minilm.nn.functional as F
from minilm.models.gpt import GPT
from minilm.models.gpt_config import GPTConfig
from minilm.nn.layers import Linear
from minilm.nn.module import Module, Parameter
from minilm.optim import SGD
from minilm.privacy.accountant import (RDPAccountant, compute_rdp, dp_sgd_epsilon, rdp_sampled_gaussian,
                                       rdp_to_epsilon)
from minilm.privacy.canaries import (Canary, brute_force_logprobs, candidate_logprobs, exposure,
                                     make_canaries, plant, rank_of)
from minilm.privacy.dp_sgd import DPSGD, clipped_sum, per_example_norms, poisson_lot
from minilm.privacy.per_example import example_losses, per_example_grads
from minilm.tokenizers import CharTokenizer

ALPHABET = "\n '0123456789abcdefghijklmnopqrstuvwxyzAEIMNOPSUY"


def tiny_gpt(vocab, block=24, seed=0, dtype64=True):
    cfg = GPTConfig(vocab_size=vocab, n_layer=2, n_head=2, n_embd=16, block_size=block, dropout=0.0)
    model = GPT(cfg, generator=np.random.default_rng(seed))
    return model.double() if dtype64 else model


# ----- canaries and exposure ------------------------------------------------------------------
def test_trie_logprobs_equal_brute_force_and_give_the_same_ranks():
    tok = CharTokenizer.from_text(ALPHABET)
    model = tiny_gpt(tok.vocab_size)
    # make the model non-uniform over digits: a few steps of training on one canary
    canary = Canary("Olga's PIN is ", "407")
    ids = np.asarray(tok.encode(canary.line * 2), dtype=np.int64)[None, :24]
    opt = SGD(model.parameters(), lr=0.5)
    for _ in range(5):
        opt.zero_grad()
        _, loss = model(ids[:, :-1], ids[:, 1:])
        loss.backward()
        opt.step()
    trie = candidate_logprobs(model, tok, canary.context, 3, chunk=37)     # odd chunk: several blocks
    brute = brute_force_logprobs(model, tok, canary.context, 3)
    np.testing.assert_allclose(trie, brute, rtol=0, atol=1e-10)
    assert trie.std() > 0.1                                                 # the test is not vacuous
    for secret in ("407", "000", "999", "123"):
        brute_rank = 1 + sum(1 for c in range(1000) if brute[c] > brute[int(secret)])
        assert rank_of(trie, secret) == brute_rank
    assert rank_of(trie, "407") <= 5                                        # the training made it likely


def test_exposure_definition():
    assert exposure(1, 10 ** 5) == pytest.approx(math.log2(1e5))
    assert exposure(10 ** 5, 10 ** 5) == 0.0
    assert exposure(4, 1024) == pytest.approx(8.0)
    lp = np.log(np.arange(1, 101, dtype=float))                             # candidate 99 most likely
    assert rank_of(lp, "99") == 1 and rank_of(lp, "00") == 100


def test_plant_puts_each_copy_whole_in_its_own_window():
    rng = np.random.default_rng(3)
    text = "".join(rng.choice(list("abcdefgh \n"), 33 * 40))
    canaries = make_canaries(3, 5, np.random.default_rng(0))
    planted, placed = plant(text, canaries, [1, 4, 16], 33, np.random.default_rng(1))
    assert len(planted) == len(text)
    assert len({w for _, w, _ in placed}) == 21                            # distinct windows
    windows = [planted[i * 33:(i + 1) * 33] for i in range(40)]
    for i, c in enumerate(canaries):
        assert sum(c.line in w for w in windows) == [1, 4, 16][i]
    assert len({c.prefix for c in canaries}) == 3                          # one name each


def test_canary_bad_input_errors():
    tok = CharTokenizer.from_text(ALPHABET)
    model = tiny_gpt(tok.vocab_size, block=8)
    with pytest.raises(ValueError, match="block_size"):
        candidate_logprobs(model, tok, "\nOlga's PIN is ", 3)
    with pytest.raises(ValueError, match="windows"):
        plant("x" * 100, make_canaries(1, 3, np.random.default_rng(0)), [5], 33, np.random.default_rng(0))
    with pytest.raises(ValueError, match="digits"):
        rank_of(np.zeros(1000), "12")
    with pytest.raises(ValueError, match="n_digits"):
        make_canaries(1, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="rank"):
        exposure(0, 10)


# ----- per-example gradients and clipping --------------------------------------------------------
def _loop_grads(model, x, y):
    out = []
    for b in range(len(x)):
        model.zero_grad()
        _, loss = model(x[b:b + 1], y[b:b + 1])
        loss.backward()
        out.append({name: p.grad.copy() for name, p in model.named_parameters()})
    return out


def test_per_example_grads_equal_a_loop_of_single_example_backward_passes():
    model = tiny_gpt(13, block=10, seed=1)
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 13, (5, 10)), rng.integers(0, 13, (5, 10))
    grads, losses = per_example_grads(model, lambda: example_losses(model(x), y), 5)
    loop = _loop_grads(model, x, y)
    names = [n for n, _ in model.named_parameters()]
    assert set(grads) == set(names)
    assert "wpe.weight" in grads and "wte.weight" in grads                 # shared table, tied weight
    for b in range(5):
        for name in names:
            np.testing.assert_allclose(grads[name][b], loop[b][name], rtol=1e-10, atol=1e-12, err_msg=name)
        _, loss_b = model(x[b:b + 1], y[b:b + 1])
        assert losses[b] == pytest.approx(loss_b.item(), rel=1e-12)


def test_example_losses_average_to_cross_entropy():
    rng = np.random.default_rng(0)
    from minilm import Tensor
    logits = Tensor(rng.standard_normal((3, 4, 7)))
    y = rng.integers(0, 7, (3, 4))
    per = example_losses(logits, y)
    assert per.data.mean() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-12)


def test_clipping_bounds_every_per_example_norm():
    model = tiny_gpt(13, block=10, seed=4)
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, 13, (8, 10)), rng.integers(0, 13, (8, 10))
    grads, _ = per_example_grads(model, lambda: example_losses(model(x), y), 8)
    norms = per_example_norms(grads)
    clip = float(np.median(norms))                              # half the examples above, half below
    from minilm.privacy.dp_sgd import clip_factors
    factors = clip_factors(norms, clip)
    clipped = {k: g * factors.reshape((-1,) + (1,) * (g.ndim - 1)) for k, g in grads.items()}
    after = per_example_norms(clipped)
    assert np.all(after <= clip * (1 + 1e-9))
    below = norms <= clip
    np.testing.assert_allclose(after[below], norms[below])      # small gradients are left alone
    np.testing.assert_allclose(after[~below], clip)             # large ones land exactly on C
    summed, _ = clipped_sum(grads, clip)
    for k in grads:
        np.testing.assert_allclose(summed[k], clipped[k].sum(axis=0), rtol=1e-10, atol=1e-14)


def test_dp_sgd_without_noise_is_the_clipped_sum_over_the_expected_lot():
    model = tiny_gpt(13, block=10, seed=6)
    rng = np.random.default_rng(7)
    x, y = rng.integers(0, 13, (20, 10)), rng.integers(0, 13, (20, 10))
    dp = DPSGD(model, SGD(model.parameters(), lr=0.1), 0.5, 0.0, 0.2, 20, np.random.default_rng(0),
               microbatch_size=3)
    lot = np.array([1, 4, 5, 9, 17])
    private, stats = dp.private_gradient(lambda idx: example_losses(model(x[idx]), y[idx]), lot)
    grads, _ = per_example_grads(model, lambda: example_losses(model(x[lot]), y[lot]), 5)
    reference, _ = clipped_sum(grads, 0.5)
    for k in reference:
        np.testing.assert_allclose(private[k], reference[k] / 4.0, rtol=1e-10, atol=1e-14)   # q N = 4, not 5
    assert stats["lot_size"] == 5
    noisy = DPSGD(model, SGD(model.parameters(), lr=0.1), 0.5, 2.0, 0.25, 20, np.random.default_rng(0))
    before = model.wte.weight.data.copy()
    noisy.step(lambda idx: example_losses(model(x[idx]), y[idx]), lot)
    assert not np.allclose(before, model.wte.weight.data) and noisy.accountant.steps == 1
    assert math.isfinite(noisy.epsilon(1e-5))


def test_poisson_lot_rate():
    sizes = [len(poisson_lot(1000, 0.1, np.random.default_rng(s))) for s in range(50)]
    assert 95 < np.mean(sizes) < 105 and np.std(sizes) > 3             # random size, mean q N


class _Scaled(Module):
    """A weight used outside its module's forward: the per-example rules cannot see it."""

    def __init__(self):
        super().__init__()
        self.lin = Linear(3, 2, generator=np.random.default_rng(0))

    def forward(self, x):
        return self.lin(x) + F.linear(x, self.lin.weight * 2.0)


def test_per_example_grads_refuse_what_they_cannot_do():
    m = _Scaled().double()
    x = np.random.default_rng(0).standard_normal((4, 3))
    from minilm import Tensor
    with pytest.raises(RuntimeError, match="outside its module"):
        per_example_grads(m, lambda: m(Tensor(x)).sum(axis=-1), 4)

    class Bare(Module):
        def __init__(self):
            super().__init__()
            self.w = Parameter(np.ones(3))

        def forward(self, x):
            return (x * self.w).sum(axis=-1)

    bare = Bare()
    with pytest.raises(ValueError, match="'w'.*not a\\s+Linear"):
        per_example_grads(bare, lambda: bare(Tensor(x)), 4)
    model = tiny_gpt(13, block=10)
    ids = np.zeros((4, 10), dtype=np.int64)
    with pytest.raises(ValueError, match="got \\(3,\\)"):
        per_example_grads(model, lambda: example_losses(model(ids), ids)[:3], 4)
    with pytest.raises(ValueError, match="batch of 5"):
        per_example_grads(model, lambda: example_losses(model(ids), ids), 5)
    for m in model.modules():
        assert "forward" not in m.__dict__                                # wrappers always removed


# ----- the accountant ---------------------------------------------------------------------------
# Published values from TensorFlow Privacy's own tests (github.com/tensorflow/privacy,
# tensorflow_privacy/privacy/analysis/rdp_accountant_test.py and compute_dp_sgd_privacy_test.py).
TFP_ORDERS = [1.25, 1.5, 1.75, 2., 2.25, 2.5, 3., 3.5, 4., 4.5] + list(range(5, 64)) + [128, 256, 512]


@pytest.mark.parametrize("n,batch,sigma,epochs,delta,eps,order", [
    (60000, 150, 1.3, 15, 1e-5, 0.7242234026109595, 19.0),        # MNIST-sized, TFP 'Test0'
    (100000, 100, 1.0, 30, 1e-7, 1.4154988495444845, 13.0),       # 'Test1'
    (100000000, 1024, 0.1, 10, 1e-7, 5907982.31138195, 1.25),     # 'Test2': a fractional order wins
])
def test_dp_sgd_epsilon_matches_tensorflow_privacy(n, batch, sigma, epochs, delta, eps, order):
    q, steps = batch / n, int(math.ceil(epochs * n / batch))
    rdp = compute_rdp(q, sigma, steps, TFP_ORDERS)
    got, best = rdp_to_epsilon(TFP_ORDERS, rdp, delta)
    assert got == pytest.approx(eps, rel=1e-9) and best == order


def test_rdp_matches_tensorflow_privacy_values():
    assert compute_rdp(0.1, 2, 10, [5])[0] == pytest.approx(0.07737, abs=5e-6)
    got = compute_rdp(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100, np.inf])
    np.testing.assert_allclose(got, [6.5007e-04, 1.0854e-03, 2.1808e-03, 2.3846e-02, 1.6742e+02, np.inf],
                               rtol=1e-4)
    # the conversion alone: constant RDP 1.1 at orders 2..32 is (1.32783806176, 1e-5)-DP, order 32
    assert rdp_to_epsilon(range(2, 33), [1.1] * 31, 1e-5) == (pytest.approx(1.32783806176, abs=1e-10), 32.0)
    # the classic conversion is looser
    assert rdp_to_epsilon(range(2, 33), [1.1] * 31, 1e-5, "classic")[0] > 1.33


def test_no_sampling_is_the_gaussian_closed_form():
    orders = [1.5, 2, 3.7, 10, 64]
    for sigma in (0.5, 1.0, 4.0):
        np.testing.assert_allclose(rdp_sampled_gaussian(1.0, sigma, orders),
                                   np.array(orders) / (2 * sigma ** 2), rtol=1e-14)
    # and the sampled formula tends to it as q -> 1 (integer and fractional orders)
    np.testing.assert_allclose(rdp_sampled_gaussian(1 - 1e-9, 1.0, [3, 3.5]), [1.5, 1.75], rtol=1e-6)
    assert rdp_sampled_gaussian(0.0, 1.0, [2, 8]).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("alpha", [3, 3.5])
def test_rdp_equals_direct_numerical_integration(alpha):
    """log A_alpha = log of integral of mu0(z) (mu(z)/mu0(z))^alpha dz, on a fine grid."""
    q, sigma = 0.05, 1.2
    z = np.linspace(-40.0, 50.0, 400001)
    log_mu0 = -z ** 2 / (2 * sigma ** 2) - math.log(sigma * math.sqrt(2 * math.pi))
    log_ratio = np.log1p(q * np.expm1((2 * z - 1) / (2 * sigma ** 2)))   # log((1-q) + q mu1/mu0)
    integrand = np.exp(log_mu0 + alpha * log_ratio)
    a = np.sum((integrand[1:] + integrand[:-1]) * np.diff(z)) / 2
    assert rdp_sampled_gaussian(q, sigma, [alpha])[0] == pytest.approx(math.log(a) / (alpha - 1), rel=1e-8)


def test_slow_fractional_series_falls_back_to_an_upper_bound():
    """q = 0.25, sigma = 2, alpha = 1.5: the series needs ~10^4 terms; the chord bound is used."""
    q, sigma, alpha = 0.25, 2.0, 1.5
    z = np.linspace(-40.0, 50.0, 400001)
    log_mu0 = -z ** 2 / (2 * sigma ** 2) - math.log(sigma * math.sqrt(2 * math.pi))
    integrand = np.exp(log_mu0 + alpha * np.log1p(q * np.expm1((2 * z - 1) / (2 * sigma ** 2))))
    exact = math.log(np.sum((integrand[1:] + integrand[:-1]) * np.diff(z)) / 2) / (alpha - 1)
    got = rdp_sampled_gaussian(q, sigma, [alpha])[0]
    assert exact <= got <= rdp_sampled_gaussian(q, sigma, [2])[0] + 1e-15


def test_accountant_composes_and_rejects_bad_input():
    acc = RDPAccountant()
    acc.step(0.01, 1.1, n=300)
    acc.step(0.01, 1.1, n=700)
    assert acc.steps == 1000
    assert acc.epsilon(1e-5) == pytest.approx(dp_sgd_epsilon(0.01, 1.1, 1000, 1e-5), rel=1e-12)
    assert dp_sgd_epsilon(0.01, 1.1, 2000, 1e-5) > acc.epsilon(1e-5)       # more steps, more epsilon
    assert dp_sgd_epsilon(0.01, 2.0, 1000, 1e-5) < acc.epsilon(1e-5)       # more noise, less
    with pytest.raises(ValueError, match="sample_rate"):
        rdp_sampled_gaussian(1.5, 1.0)
    with pytest.raises(ValueError, match="noise_multiplier"):
        rdp_sampled_gaussian(0.1, -1.0)
    with pytest.raises(ValueError, match="order"):
        rdp_sampled_gaussian(0.1, 1.0, [0.5, 2])
    with pytest.raises(ValueError, match="delta"):
        rdp_to_epsilon([2, 3], [0.1, 0.2], 0.0)
    with pytest.raises(ValueError, match="conversion"):
        rdp_to_epsilon([2, 3], [0.1, 0.2], 1e-5, "loose")
    with pytest.raises(ValueError, match="steps"):
        compute_rdp(0.1, 1.0, -1)
    model = tiny_gpt(13)
    with pytest.raises(ValueError, match="max_grad_norm"):
        DPSGD(model, SGD(model.parameters(), lr=0.1), 0.0, 1.0, 0.1, 100, np.random.default_rng(0))
