"""The numba backend really runs its kernels inside the models (and equals the NumPy reference).

A backend that silently falls back to the reference ops would pass every
parity test, so each test here counts the fused-kernel calls
(minilm.backend.kernel_call_counts) during a tiny GPT's and BERT's forward
and backward and a few generate() steps, and checks the results against the
NumPy backend. float32 tolerance: loss within 1e-5 relative; each gradient
within 1e-3 |ref| + 1e-4 * (largest gradient of the model); logits within
1e-4 |ref| + 1e-5 * max |logit|; generated token ids equal.
Skipped when numba is not installed; the conftest fixture restores the
backend after each test.
"""
import importlib.util

import numpy as np
import pytest

import minilm
from minilm import backend
from minilm.generate import generate
from minilm.models import BertConfig, BertForMaskedLM, GPT, GPTConfig

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")

ALL_KERNELS = {"attention_forward", "attention_backward", "gelu_forward", "gelu_backward",
               "layer_norm_forward", "layer_norm_backward", "cross_entropy_forward", "cross_entropy_backward"}


def run_on(name, fn):
    """fn() under backend `name`; returns (its result, the kernel calls it made)."""
    assert minilm.set_backend(name) == name
    backend.reset_kernel_call_counts()
    result = fn()
    return result, backend.kernel_call_counts()


def loss_and_grads(model, forward):
    model.zero_grad()
    loss = forward(model)
    loss.backward()
    return float(loss.item()), {n: p.grad.copy() for n, p in model.named_parameters() if p.grad is not None}


def assert_close_to_reference(reference, fast):
    (loss_ref, grads_ref), (loss_fast, grads_fast) = reference, fast
    assert abs(loss_fast - loss_ref) <= 1e-5 * max(1.0, abs(loss_ref)), (loss_ref, loss_fast)
    assert grads_ref.keys() == grads_fast.keys()
    scale = max(float(np.abs(g).max()) for g in grads_ref.values())
    for name, g in grads_ref.items():
        diff = np.abs(grads_fast[name] - g)
        assert (diff <= 1e-3 * np.abs(g) + 1e-4 * scale).all(), f"{name}: differs by up to {diff.max():.3g}"


def tiny_gpt():
    model = GPT(GPTConfig(vocab_size=19, n_layer=2, n_head=2, n_embd=16, block_size=12, dropout=0.0),
                generator=np.random.default_rng(0))
    spread = np.random.default_rng(1)
    for p in model.parameters():             # larger weights than GPT-2's 0.02: distinct logits, no near-ties
        p.data = p.data + (spread.standard_normal(p.shape) * 0.3).astype(np.float32)
    return model


def test_gpt_forward_backward_calls_every_kernel_and_matches_numpy():
    model = tiny_gpt()
    x = np.random.default_rng(2).integers(0, 19, (2, 12))
    y = np.roll(x, -1, axis=1)
    y[0, -3:] = -100
    forward = lambda m: m(x, targets=y)[1]
    reference, ref_calls = run_on("numpy", lambda: loss_and_grads(model, forward))
    fast, calls = run_on("numba", lambda: loss_and_grads(model, forward))
    assert ref_calls == {}
    assert set(calls) == ALL_KERNELS, f"kernels not called: {sorted(ALL_KERNELS - set(calls))}"
    assert calls["layer_norm_forward"] == 5 and calls["attention_forward"] == 2      # 2 per block + ln_f; 1 per block
    assert_close_to_reference(reference, fast)


def test_bert_forward_backward_with_padding_calls_every_kernel_and_matches_numpy():
    cfg = BertConfig(vocab_size=23, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=10, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    model = BertForMaskedLM(cfg, generator=np.random.default_rng(3))
    rng = np.random.default_rng(4)
    ids = rng.integers(5, 23, (2, 10))
    mask = np.ones_like(ids)
    mask[1, 6:] = 0                                              # padding: the attention kernel's key mask
    labels = np.where(rng.random(ids.shape) < 0.4, ids, -100)
    labels[0, 0], labels[mask == 0] = ids[0, 0], -100
    forward = lambda m: m(ids, attention_mask=mask, labels=labels)[1]
    reference, _ = run_on("numpy", lambda: loss_and_grads(model, forward))
    fast, calls = run_on("numba", lambda: loss_and_grads(model, forward))
    assert set(calls) == ALL_KERNELS, f"kernels not called: {sorted(ALL_KERNELS - set(calls))}"
    assert_close_to_reference(reference, fast)


def test_generate_with_the_kv_cache_runs_the_kernels_and_gives_the_numpy_tokens():
    model = tiny_gpt()
    prompt = np.array([[3, 1, 4], [1, 5, 9]])
    steps = 4

    def sample():
        greedy = generate(model, prompt, steps, greedy=True)
        sampled = generate(model, prompt, steps, temperature=0.8, rng=np.random.default_rng(5))
        with minilm.no_grad():
            logits = model(greedy).numpy()
        return greedy, sampled, logits

    (greedy_ref, sampled_ref, logits_ref), _ = run_on("numpy", sample)
    (greedy, sampled, logits), calls = run_on("numba", sample)
    # every step of both generate() calls plus the final forward ran the fused ops
    assert calls.get("attention_forward", 0) >= 2 * steps * 2 and calls.get("layer_norm_forward", 0) >= 2 * steps * 5
    assert calls.get("gelu_forward", 0) >= 2 * steps * 2
    assert "attention_backward" not in calls                        # inference: no backward kernels
    np.testing.assert_array_equal(greedy, greedy_ref)
    np.testing.assert_array_equal(sampled, sampled_ref)
    np.testing.assert_allclose(logits, logits_ref, rtol=1e-4, atol=1e-5 * np.abs(logits_ref).max())


def test_kernel_call_counts_reset_and_count_only_real_calls():
    minilm.set_backend("numba")
    backend.reset_kernel_call_counts()
    assert backend.kernel_call_counts() == {}
    x = minilm.Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    minilm.nn.functional.gelu(x).sum().backward()
    assert backend.kernel_call_counts() == {"gelu_forward": 1, "gelu_backward": 1}
    minilm.nn.functional.gelu(minilm.Tensor(np.ones(3)))             # float64: the reference op, no kernel
    assert backend.kernel_call_counts() == {"gelu_forward": 1, "gelu_backward": 1}
    minilm.set_backend("numpy")
    minilm.nn.functional.gelu(x)
    assert backend.kernel_call_counts() == {"gelu_forward": 1, "gelu_backward": 1}


# ----- conftest's autouse fixture: no test inherits another's backend or random state ----------------
# (The CLI's --backend used to leave the whole rest of the run on NumPy.) The two tests below run
# in this order; the second also holds on its own.
RUN_BACKEND = []


def test_a_test_that_switches_the_backend_and_reseeds():
    RUN_BACKEND.append(minilm.get_backend())
    minilm.set_backend("numpy" if minilm.get_backend() != "numpy" else "numba")
    minilm.manual_seed(12345)


def test_the_next_test_gets_the_run_backend_and_a_freshly_seeded_generator():
    from conftest import GLOBAL_SEED
    assert minilm.get_backend() == (RUN_BACKEND[0] if RUN_BACKEND else minilm.get_backend())
    assert minilm.random.default_generator().random() == np.random.default_rng(GLOBAL_SEED).random()
