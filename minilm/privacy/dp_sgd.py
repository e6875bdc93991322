"""DP-SGD: differentially private training (Abadi et al. 2016, "Deep Learning with Differential Privacy").

One step, for a lot of examples:

    1. sample the lot: every one of the N training examples joins it independently with
       probability q (Poisson sampling; the accountant's analysis assumes exactly this,
       so the lot size varies from step to step and may even be 0)
    2. g_i = gradient of example i's loss                   (per_example.py, vectorised)
    3. g_i <- g_i / max(1, ||g_i|| / C)                      clip each example to L2 norm C
    4. g   = ( sum_i g_i + N(0, sigma^2 C^2 I) ) / (q N)     add noise, divide by the EXPECTED lot size
    5. hand g to any optimizer (SGD, Adam: what it does with g is post-processing,
       which costs no privacy)

Clipping bounds each example's influence on the sum by C (its sensitivity);
the Gaussian noise of std sigma C hides any one example's contribution.
Dividing by the expected lot size qN rather than the actual one keeps the
actual size (which depends on who was sampled) out of the output.
The accountant (accountant.py) turns (q, sigma, steps) into (epsilon, delta).

What the guarantee covers: one *example* (here one training window). A
secret that appears in k examples is protected only as a group of k, whose
epsilon grows roughly k-fold; the canary benchmark shows what that means.
"""
import math
import numbers

import numpy as np

from minilm.privacy.accountant import RDPAccountant
from minilm.privacy.per_example import per_example_grads


def poisson_lot(n_examples, sample_rate, generator):
    """Indices of a Poisson-sampled lot: each of range(n_examples) is in it with probability q."""
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"poisson_lot: generator must be a numpy.random.Generator, got {type(generator).__name__}")
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"poisson_lot: sample_rate must be in (0, 1], got {sample_rate}")
    return np.flatnonzero(generator.random(int(n_examples)) < sample_rate)


def per_example_norms(grads):
    """L2 norm of each example's whole gradient (all parameters together): (B,) float64."""
    sq = None
    for g in grads.values():
        flat = g.reshape(g.shape[0], -1)
        s = np.einsum("bi,bi->b", flat, flat).astype(np.float64)
        sq = s if sq is None else sq + s
    return np.sqrt(sq)


def clip_factors(norms, max_grad_norm):
    """min(1, C / ||g_i||): the factor that brings each example's gradient to norm <= C."""
    norms = np.asarray(norms, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.minimum(1.0, max_grad_norm / np.maximum(norms, 1e-300))


def clipped_sum(grads, max_grad_norm):
    """(sum_i clip(g_i) per parameter, the norms before clipping)."""
    norms = per_example_norms(grads)
    factors = clip_factors(norms, max_grad_norm)
    summed = {name: np.tensordot(factors.astype(g.dtype), g, axes=1) for name, g in grads.items()}
    return summed, norms


def _positive(name, value, where, allow_zero=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{where}: {name} must be a {'non-negative' if allow_zero else 'positive'} "
                         f"number, got {value!r}")


class DPSGD:
    """Private gradients for an optimizer; also keeps the privacy account.

        dp = DPSGD(model, optimizer, max_grad_norm=1.0, noise_multiplier=1.0,
                   sample_rate=256 / N, n_examples=N, generator=np.random.default_rng(0))
        for step in range(steps):
            lot = dp.sample_lot()                     # indices into your N examples
            dp.step(lambda idx: example_losses(model(x[idx]), y[idx]), lot)
        dp.epsilon(delta=1 / N)

    example_loss_fn(indices) must return a Tensor of shape (len(indices),): each example's loss.
    The lot is processed in microbatches of `microbatch_size` examples so that the per-example
    gradients (one copy of every weight per example) fit in memory; the result does not depend
    on it. noise_multiplier=0 gives clipped but not noised SGD (no privacy: epsilon is inf).
    """

    def __init__(self, model, optimizer, max_grad_norm, noise_multiplier, sample_rate, n_examples,
                 generator, microbatch_size=64):
        _positive("max_grad_norm", max_grad_norm, "DPSGD")
        _positive("noise_multiplier", noise_multiplier, "DPSGD", allow_zero=True)
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"DPSGD: sample_rate must be in (0, 1], got {sample_rate}")
        if isinstance(n_examples, bool) or not isinstance(n_examples, numbers.Integral) or n_examples < 1:
            raise ValueError(f"DPSGD: n_examples must be a positive int, got {n_examples!r}")
        if not isinstance(generator, np.random.Generator):
            raise TypeError(f"DPSGD: generator must be a numpy.random.Generator, got {type(generator).__name__}")
        self.model, self.optimizer = model, optimizer
        self.max_grad_norm, self.noise_multiplier = float(max_grad_norm), float(noise_multiplier)
        self.sample_rate, self.n_examples = float(sample_rate), int(n_examples)
        self.generator, self.microbatch_size = generator, int(microbatch_size)
        self.accountant = RDPAccountant()

    @property
    def expected_lot_size(self):
        return self.sample_rate * self.n_examples

    def sample_lot(self):
        return poisson_lot(self.n_examples, self.sample_rate, self.generator)

    def private_gradient(self, example_loss_fn, lot):
        """The noised, clipped, averaged gradient {name: array} of one lot, and statistics."""
        params = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        total = {name: np.zeros(p.shape, dtype=p.dtype) for name, p in params.items()}
        norms, loss_sum = [], 0.0
        lot = np.asarray(lot, dtype=np.int64)
        for start in range(0, len(lot), self.microbatch_size):
            idx = lot[start:start + self.microbatch_size]
            grads, losses = per_example_grads(self.model, lambda: example_loss_fn(idx), len(idx))
            summed, n = clipped_sum(grads, self.max_grad_norm)
            for name in total:
                total[name] += summed[name]
            norms.append(n)
            loss_sum += float(losses.sum())
        std = self.noise_multiplier * self.max_grad_norm
        for name, g in total.items():
            if std > 0:
                g += self.generator.normal(0.0, std, size=g.shape).astype(g.dtype)
            g /= self.expected_lot_size
        norms = np.concatenate(norms) if norms else np.zeros(0)
        stats = {"lot_size": int(len(lot)), "loss": loss_sum / max(len(lot), 1),
                 "clipped_fraction": float(np.mean(norms > self.max_grad_norm)) if len(norms) else 0.0,
                 "median_norm": float(np.median(norms)) if len(norms) else 0.0}
        return total, stats

    def step(self, example_loss_fn, lot):
        """One DP-SGD step on this lot: private gradient -> p.grad -> optimizer.step(). Returns stats."""
        grads, stats = self.private_gradient(example_loss_fn, lot)
        for name, p in self.model.named_parameters():
            p.grad = grads.get(name)                  # frozen parameters keep grad None
        self.optimizer.step()
        self.accountant.step(self.sample_rate, self.noise_multiplier)
        return stats

    def epsilon(self, delta):
        """epsilon spent so far at this delta (RDP accountant, tight conversion)."""
        return self.accountant.epsilon(delta)
