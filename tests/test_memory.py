"""Training must not leak: the graph of each step is freed by backward."""
import os
import sys

import numpy as np
import pytest

import minilm
import minilm.nn.functional as F
from minilm import Tensor


def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_500_training_steps_of_an_mlp_keep_resident_memory_flat():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    w1 = Tensor(rng.standard_normal((32, 128)).astype(np.float32) * 0.1, requires_grad=True)
    b1 = Tensor(np.zeros(128, np.float32), requires_grad=True)
    w2 = Tensor(rng.standard_normal((128, 10)).astype(np.float32) * 0.1, requires_grad=True)
    params = [w1, b1, w2]
    samples, losses = [], []
    for step in range(500):
        h = F.gelu(Tensor(x) @ w1 + b1)
        loss = F.cross_entropy(F.layer_norm(h, 128) @ w2, y)
        loss.backward()
        for p in params:
            p.data -= 0.1 * p.grad
            p.grad = None
        losses.append(loss.item())
        if step in (100, 499):
            samples.append(resident_mb())
    assert losses[-1] < losses[0] * 0.5          # it did learn something
    assert samples[1] - samples[0] < 5.0, f"resident memory grew from {samples[0]:.1f} MB to {samples[1]:.1f} MB"
