"""Whole-model parity: every available kernel backend gives the reference's loss and gradients.

The NumPy reference is the definition; a backend (Numba on the CPU; CUDA
when a GPU exists) must reproduce a GPT's and a BERT's loss and every
parameter gradient within float32 tolerance. Backends that cannot load
here are skipped with the reason.
"""
import importlib.util

import numpy as np
import pytest

import minilm
from minilm.models import BertConfig, BertForMaskedLM, GPT, GPTConfig

BACKENDS = ["numba"]


@pytest.fixture(params=BACKENDS)
def fast_backend(request):
    if request.param == "numba" and importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed")
    previous = minilm.get_backend()
    yield request.param
    minilm.set_backend(previous)


def loss_and_grads(model, run, backend):
    minilm.set_backend(backend)
    assert minilm.get_backend() == backend
    model.zero_grad()
    loss = run(model)
    loss.backward()
    return float(loss.item()), {n: p.grad.copy() for n, p in model.named_parameters() if p.grad is not None}


def assert_same(reference, fast, rtol=1e-3, atol=1e-4):
    """float32 tolerance: |fast - ref| <= rtol |ref| + atol * (largest gradient anywhere).

    The absolute part is relative to the model's largest gradient because some
    gradients are exactly zero in exact arithmetic (a key bias shifts every
    score of a softmax row equally) and are pure round-off in both backends.
    """
    loss_ref, grads_ref = reference
    loss_fast, grads_fast = fast
    assert abs(loss_ref - loss_fast) <= 1e-5 * max(1.0, abs(loss_ref)), (loss_ref, loss_fast)
    assert grads_ref.keys() == grads_fast.keys()
    scale = max(float(np.abs(g).max()) for g in grads_ref.values())
    for name, g in grads_ref.items():
        excess = np.abs(grads_fast[name] - g) - (rtol * np.abs(g) + atol * scale)
        assert excess.max() <= 0, f"{name}: gradients differ by up to {np.abs(grads_fast[name] - g).max():.3g} " \
                                  f"(largest gradient in the model {scale:.3g})"


def test_gpt_loss_and_gradients_match_the_reference(fast_backend):
    rng = np.random.default_rng(0)
    model = GPT(GPTConfig.preset("nano", vocab_size=37, block_size=29, n_layer=2, dropout=0.0), generator=rng)
    x = rng.integers(0, 37, (3, 29))
    y = rng.integers(0, 37, (3, 29))
    y[0, :5] = -100
    run = lambda m: m(x, targets=y)[1]
    assert_same(loss_and_grads(model, run, "numpy"), loss_and_grads(model, run, fast_backend))


def test_bert_loss_and_gradients_match_the_reference(fast_backend):
    rng = np.random.default_rng(1)
    cfg = BertConfig.preset("bert-tiny", vocab_size=41, max_position_embeddings=33, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0)
    model = BertForMaskedLM(cfg, generator=rng)
    ids = rng.integers(5, 41, (2, 33))
    mask = np.ones_like(ids)
    mask[1, 20:] = 0                                     # padding in the second sentence
    labels = np.where(rng.random(ids.shape) < 0.3, ids, -100)
    labels[mask == 0] = -100
    run = lambda m: m(ids, attention_mask=mask, token_type_ids=np.zeros_like(ids), labels=labels)[1]
    assert_same(loss_and_grads(model, run, "numpy"), loss_and_grads(model, run, fast_backend))
