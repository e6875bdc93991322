"""Forward values against independent NumPy formulas, with hypothesis over shapes."""
import importlib.util
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minilm
import minilm.nn.functional as F
from minilm import Tensor

shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5)
finite = st.floats(-10, 10, width=32)


@settings(max_examples=40, deadline=None)
@given(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
       st.integers(0, 2 ** 31))
def test_binary_ops_broadcast_like_numpy_and_grads_have_input_shapes(shapes_, seed):
    rng = np.random.default_rng(seed)
    sa, sb = shapes_.input_shapes
    a, b = rng.standard_normal(sa), rng.standard_normal(sb) + 3.0
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    out = ta * tb + ta / tb - tb
    np.testing.assert_allclose(out.numpy(), a * b + a / b - b, rtol=1e-12)
    out.sum().backward()
    assert ta.grad.shape == sa and tb.grad.shape == sb
    # d/da sum(a*b + a/b - b) = sum over broadcast of (b + 1/b)
    expected_a = np.broadcast_to(b + 1 / b, np.broadcast_shapes(sa, sb))
    expected_a = expected_a.sum(axis=tuple(range(expected_a.ndim - len(sa)))) if expected_a.ndim > len(sa) else expected_a
    expected_a = expected_a.sum(axis=tuple(i for i, n in enumerate(sa) if n == 1), keepdims=True) if sa else expected_a.sum()
    np.testing.assert_allclose(ta.grad, np.reshape(expected_a, sa), rtol=1e-10)


@settings(max_examples=40, deadline=None)
@given(shapes, st.data())
def test_reductions_match_numpy(shape, data):
    x = data.draw(hnp.arrays(np.float64, shape, elements=finite))
    axis = data.draw(st.none() | st.integers(-len(shape), len(shape) - 1))
    keep = data.draw(st.booleans())
    t = Tensor(x)
    np.testing.assert_allclose(t.sum(axis=axis, keepdims=keep).numpy(), x.sum(axis=axis, keepdims=keep), atol=1e-9)
    np.testing.assert_allclose(t.mean(axis=axis, keepdims=keep).numpy(), x.mean(axis=axis, keepdims=keep), atol=1e-9)
    np.testing.assert_allclose(t.max(axis=axis, keepdims=keep).numpy(), x.max(axis=axis, keepdims=keep))
    n = x.size if axis is None else x.shape[axis]
    if n > 1:
        np.testing.assert_allclose(t.var(axis=axis, keepdims=keep).numpy(),
                                   x.var(axis=axis, keepdims=keep, ddof=1), atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(shapes, st.data())
def test_softmax_family_matches_definition(shape, data):
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-50, 50)))
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    ref = e / e.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(F.softmax(Tensor(x)).numpy(), ref, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(F.log_softmax(Tensor(x)).numpy(), np.log(ref), rtol=1e-9, atol=1e-9)


def test_gelu_against_math_erf_and_tanh_formula():
    x = np.linspace(-8, 8, 1001)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    np.testing.assert_allclose(F.gelu(Tensor(x)).numpy(), exact, rtol=1e-12, atol=1e-14)
    # float32 uses a vectorised erf approximation: float32-level accuracy
    np.testing.assert_allclose(F.gelu(Tensor(x.astype(np.float32))).numpy(), exact, atol=3e-6)
    tanh_ref = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(F.gelu(Tensor(x), approximate="tanh").numpy(), tanh_ref, rtol=1e-12)


def test_layer_norm_matches_formula(rng):
    x = rng.standard_normal((3, 5, 8)) * 4 + 2
    w, b = rng.standard_normal(8), rng.standard_normal(8)
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(F.layer_norm(Tensor(x), 8, Tensor(w), Tensor(b)).numpy(), ref, rtol=1e-10)


LAYER_NORM_BACKENDS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(
    importlib.util.find_spec("numba") is None, reason="numba is not installed"))]


@pytest.mark.parametrize("backend", LAYER_NORM_BACKENDS)
@pytest.mark.parametrize("scale", [1.0, 1e20, 1e30])
@pytest.mark.parametrize("affine", [True, False])
def test_float32_layer_norm_at_huge_scale_is_the_normalised_input_on_every_backend(backend, scale, affine):
    """LayerNorm is scale-invariant. At scale 1e20 the float32 squares overflow (1e40 > 3.4e38):
    the reference used to return zeros and the Numba kernel NaN. Both must give the normalised
    input, forward and backward (the kernel runs only with weight and bias: affine=True)."""
    minilm.set_backend(backend)                               # conftest restores the run's backend
    assert minilm.get_backend() == backend
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((2, 3, 16)) * scale).astype(np.float32)
    x[0, 0] += np.float32(3 * scale)                          # an offset row: |mean| >> std
    w = rng.standard_normal(16).astype(np.float32) if affine else None
    b = rng.standard_normal(16).astype(np.float32) if affine else None
    dy = rng.standard_normal(x.shape).astype(np.float32)
    # the float64 definition (eps is negligible next to a variance of 1e40)
    x64 = x.astype(np.float64)
    centered = x64 - x64.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt((centered ** 2).mean(-1, keepdims=True) + 1e-5)
    xhat = centered * rstd
    w64 = np.ones(16) if w is None else w.astype(np.float64)
    g = dy * w64
    dx_want = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))

    xt = Tensor(x, requires_grad=True)
    wt, bt = (None, None) if not affine else (Tensor(w, requires_grad=True), Tensor(b, requires_grad=True))
    y = F.layer_norm(xt, 16, wt, bt)
    y.backward(dy)
    np.testing.assert_allclose(y.numpy(), xhat * w64 + (0 if b is None else b), rtol=1e-4, atol=1e-5)
    assert xt.grad.dtype == np.float32
    np.testing.assert_allclose(xt.grad, dx_want, rtol=1e-4, atol=1e-5 * np.abs(dx_want).max())
    if affine:
        np.testing.assert_allclose(wt.grad, (dy * xhat).sum((0, 1)), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(bt.grad, dy.sum((0, 1)), rtol=1e-5, atol=1e-5)


def test_cross_entropy_matches_formula(rng):
    logits = rng.standard_normal((7, 4))
    targets = np.array([0, 3, 1, -100, 2, 2, -100])
    keep = targets != -100
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ref = -logp[np.arange(7)[keep], targets[keep]].mean()
    np.testing.assert_allclose(F.cross_entropy(Tensor(logits), targets).item(), ref, rtol=1e-12)
    eps = 0.2
    smooth = ((1 - eps) * -logp[np.arange(7), np.where(keep, targets, 0)] - eps * logp.mean(1))[keep].mean()
    np.testing.assert_allclose(F.cross_entropy(Tensor(logits), targets, label_smoothing=eps).item(), smooth)


def test_cross_entropy_all_ignored_is_zero_not_nan():
    loss = F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([-100, -100]))
    assert loss.item() == 0.0


def test_attention_matches_formula_with_masks(rng):
    q, k, v = (rng.standard_normal((2, 3, 5, 4)) for _ in range(3))
    s = q @ k.swapaxes(-1, -2) / 2.0
    causal = np.tril(np.ones((5, 5), bool))
    s_masked = np.where(causal, s, -np.inf)
    p = np.exp(s_masked - s_masked.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out, weights = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), is_causal=True,
                                                  return_weights=True)
    np.testing.assert_allclose(out.numpy(), p @ v, rtol=1e-10)
    np.testing.assert_allclose(weights.numpy(), p, rtol=1e-10)


def test_dropout_train_eval_and_seeded():
    x = Tensor(np.ones((200, 200)))
    assert F.dropout(x, 0.5, training=False) is x
    a = F.dropout(x, 0.25, True, np.random.default_rng(1)).numpy()
    b = F.dropout(x, 0.25, True, np.random.default_rng(1)).numpy()
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 1 / 0.75}
    assert abs((a == 0).mean() - 0.25) < 0.01          # 40k draws: 4 sigma ~ 0.009
    assert abs(a.mean() - 1.0) < 0.02                  # inverted dropout keeps the mean


def test_embedding_forward(rng):
    w = rng.standard_normal((10, 3))
    ids = np.array([[1, 9], [0, 1]])
    np.testing.assert_array_equal(F.embedding(ids, Tensor(w)).numpy(), w[ids])


def test_shape_functions_match_numpy(rng):
    x = rng.standard_normal((2, 3, 4))
    t = Tensor(x)
    np.testing.assert_array_equal(t.permute(2, 0, 1).numpy(), x.transpose(2, 0, 1))
    np.testing.assert_array_equal(t.transpose(0, 2).numpy(), x.swapaxes(0, 2))
    np.testing.assert_array_equal(t.T.numpy(), x.T)
    np.testing.assert_array_equal(minilm.cat([t, t], axis=1).numpy(), np.concatenate([x, x], 1))
    np.testing.assert_array_equal(minilm.stack([t, t], axis=1).numpy(), np.stack([x, x], 1))
    np.testing.assert_array_equal(t[:, 1:, ::2].numpy(), x[:, 1:, ::2])


def test_softmax_of_an_all_minus_inf_row_is_zeros_with_zero_gradient():
    """Attention masks a query that may see no key with -inf everywhere: its weights are 0, never NaN."""
    x = Tensor(np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]]), requires_grad=True)
    y = x.softmax(axis=-1)
    e = np.exp([0.0, 1.0])
    np.testing.assert_allclose(y.numpy(), [[e[0] / e.sum(), 0.0, e[1] / e.sum()], [0.0, 0.0, 0.0]])
    (y * Tensor(np.arange(6.0).reshape(2, 3))).sum().backward()
    assert np.isfinite(x.grad).all() and not x.grad[1].any()
