"""Privacy: measuring memorisation (canaries, exposure) and training with differential privacy (DP-SGD).

- ``canaries.py``: plant random secrets in a corpus; rank the true secret among all candidates of
  its format by the model's log-likelihood; exposure (Carlini et al. 2019, "The Secret Sharer").
- ``per_example.py``: per-example gradients of Linear, Embedding and LayerNorm weights from one
  batched forward and backward pass.
- ``dp_sgd.py``: DP-SGD (Abadi et al. 2016): Poisson-sampled lots, per-example clipping, Gaussian
  noise, any optimizer.
- ``accountant.py``: Rényi DP of the sampled Gaussian mechanism (Mironov, Talwar & Zhang 2019),
  composed over steps and converted to (epsilon, delta).
"""
from minilm.privacy.accountant import RDPAccountant, compute_rdp, dp_sgd_epsilon, rdp_sampled_gaussian, rdp_to_epsilon
from minilm.privacy.canaries import (Canary, brute_force_logprobs, candidate_logprobs, canary_exposure, exposure,
                                     make_canaries, plant, rank_of)
from minilm.privacy.dp_sgd import DPSGD, clipped_sum, per_example_norms, poisson_lot
from minilm.privacy.per_example import example_losses, per_example_grads

__all__ = ["Canary", "make_canaries", "plant", "candidate_logprobs", "brute_force_logprobs", "rank_of", "exposure",
           "canary_exposure", "per_example_grads", "example_losses", "DPSGD", "poisson_lot", "per_example_norms",
           "clipped_sum", "RDPAccountant", "rdp_sampled_gaussian", "compute_rdp", "rdp_to_epsilon",
           "dp_sgd_epsilon"]
