"""Every differentiable op: float64 gradients against central finite differences."""
import numpy as np
import pytest

import minilm
import minilm.nn.functional as F
from minilm import Tensor, gradcheck


def t64(rng, *shape, positive=False, requires_grad=True):
    data = rng.standard_normal(shape)
    if positive:
        data = np.abs(data) + 0.5
    return Tensor(data, requires_grad=requires_grad)


BINARY_SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((2, 1, 4), (3, 1)), ((), (2, 3))]


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow"])
@pytest.mark.parametrize("shape_a,shape_b", BINARY_SHAPES)
def test_binary_ops_with_broadcasting(rng, op, shape_a, shape_b):
    positive = op in ("div", "pow")
    a, b = t64(rng, *shape_a, positive=positive), t64(rng, *shape_b, positive=positive)
    fn = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
          "div": lambda x, y: x / y, "pow": lambda x, y: x ** y}[op]
    assert gradcheck(fn, [a, b])


def test_ops_with_python_scalars(rng):
    x = t64(rng, 3, 4, positive=True)
    assert gradcheck(lambda v: 2.0 - v * 3.0 / 1.5 + 1.0 / v + v ** 2.5 + 2.0 ** v, [x])


@pytest.mark.parametrize("name", ["neg", "exp", "log", "tanh", "sqrt", "relu", "gelu", "gelu_tanh"])
def test_unary_ops(rng, name):
    positive = name in ("log", "sqrt")
    x = t64(rng, 4, 5, positive=positive)
    if name == "relu":   # keep away from the kink at 0 where the derivative jumps
        x.data[np.abs(x.data) < 1e-3] = 0.5
    fn = {"neg": lambda v: -v, "exp": lambda v: v.exp(), "log": lambda v: v.log(),
          "tanh": lambda v: v.tanh(), "sqrt": lambda v: v.sqrt(), "relu": F.relu,
          "gelu": lambda v: F.gelu(v), "gelu_tanh": lambda v: F.gelu(v, approximate="tanh")}[name]
    assert gradcheck(fn, [x])


REDUCE_CASES = [None, 0, 1, 2, -1, (0, 2), (1, 2), (0, 1, 2)]


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "var"])
@pytest.mark.parametrize("axis", REDUCE_CASES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_every_axis_and_keepdims(rng, name, axis, keepdims):
    x = t64(rng, 2, 3, 4)
    fn = lambda v: getattr(v, name)(axis=axis, keepdims=keepdims)
    assert gradcheck(fn, [x])


def test_var_with_correction_zero(rng):
    x = t64(rng, 3, 5)
    assert gradcheck(lambda v: v.var(axis=1, correction=0), [x])


@pytest.mark.parametrize("shape_a,shape_b", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)),
                                             ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4, 3)), ((3, 4), (4,)),
                                             ((4,), (4,))])
def test_matmul_batched_and_broadcasting(rng, shape_a, shape_b):
    a, b = t64(rng, *shape_a), t64(rng, *shape_b)
    assert gradcheck(lambda x, y: x @ y, [a, b])


def test_shape_ops(rng):
    x = t64(rng, 2, 3, 4)
    assert gradcheck(lambda v: v.reshape(4, 6), [x])
    assert gradcheck(lambda v: v.reshape(-1), [x])
    assert gradcheck(lambda v: v.permute(2, 0, 1), [x])
    assert gradcheck(lambda v: v.transpose(0, 2), [x])
    assert gradcheck(lambda v: v.transpose(-1, -2), [x])
    assert gradcheck(lambda v: v.T, [x])
    assert gradcheck(lambda v: v.unsqueeze(1).squeeze(1), [x])


@pytest.mark.parametrize("index", [
    (0,), (slice(None), 1), (Ellipsis, slice(1, 3)), (slice(None, None, -1),),
    (np.array([0, 1, 0]),),                         # repeated rows: scatter-add
    (slice(None), np.array([2, 2, 0]), slice(None)),
    (np.array([[1, 0], [1, 1]]),),
])
def test_indexing_and_slicing_scatter_add(rng, index):
    x = t64(rng, 2, 3, 4)
    assert gradcheck(lambda v: v[index], [x])


def test_boolean_mask_indexing(rng):
    x = t64(rng, 3, 4)
    mask = rng.random((3, 4)) > 0.5
    assert gradcheck(lambda v: v[mask], [x])


def test_concatenate_stack_split(rng):
    a, b, c = t64(rng, 2, 3), t64(rng, 2, 5), t64(rng, 2, 3)
    assert gradcheck(lambda x, y: minilm.cat([x, y], axis=1), [a, b])
    assert gradcheck(lambda x, y: minilm.stack([x, y], axis=0), [a, c])
    assert gradcheck(lambda x, y: minilm.stack([x, y], axis=-1), [a, c])
    assert gradcheck(lambda x: minilm.split(x, 2, axis=1)[1] * 3, [b])
    assert gradcheck(lambda x: minilm.split(x, [1, 4], axis=1)[1], [b])
    parts = minilm.split(b, 2, axis=1)
    assert [p.shape for p in parts] == [(2, 2), (2, 2), (2, 1)]


def test_where_and_masked_fill(rng):
    a, b = t64(rng, 3, 4), t64(rng, 4)
    cond = rng.random((3, 4)) > 0.5
    assert gradcheck(lambda x, y: minilm.where(cond, x, y), [a, b])
    mask = rng.random((1, 4)) > 0.5
    assert gradcheck(lambda x: x.masked_fill(mask, -5.0) * 2, [a])


def test_embedding(rng):
    w = t64(rng, 7, 3)
    ids = np.array([[0, 3, 3], [6, 0, 1]])
    assert gradcheck(lambda weight: F.embedding(ids, weight), [w])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax(rng, axis):
    x = t64(rng, 3, 5)
    assert gradcheck(lambda v: F.softmax(v, axis=axis), [x])
    assert gradcheck(lambda v: F.log_softmax(v, axis=axis), [x])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_with_ignore_index_and_label_smoothing(rng, smoothing):
    logits = t64(rng, 6, 5)
    targets = np.array([0, 4, -100, 2, -100, 1])
    assert gradcheck(lambda z: F.cross_entropy(z, targets, label_smoothing=smoothing), [logits])
    logits3 = t64(rng, 2, 3, 5)
    targets3 = np.array([[1, 2, 3], [4, -1, 0]])
    assert gradcheck(lambda z: F.cross_entropy(z, targets3, ignore_index=-1), [logits3])


def test_layer_norm(rng):
    x, w, b = t64(rng, 2, 3, 6), t64(rng, 6), t64(rng, 6)
    assert gradcheck(lambda v, ww, bb: F.layer_norm(v, 6, ww, bb), [x, w, b])
    assert gradcheck(lambda v: F.layer_norm(v, (6,)), [x])


def test_dropout_backward_uses_the_same_mask(rng):
    x = t64(rng, 4, 5)
    gen_seed = 123
    # the same generator state for every call, so the finite differences see one fixed mask
    assert gradcheck(lambda v: F.dropout(v, 0.3, True, np.random.default_rng(gen_seed)), [x])


def test_linear(rng):
    x, w, b = t64(rng, 2, 3, 4), t64(rng, 5, 4), t64(rng, 5)
    assert gradcheck(lambda v, ww, bb: F.linear(v, ww, bb), [x, w, b])
    assert gradcheck(lambda v, ww: F.linear(v, ww), [t64(rng, 4), w])                 # 1-D input, no bias
    np.testing.assert_allclose(F.linear(x, w, b).numpy(), x.numpy() @ w.numpy().T + b.numpy(), rtol=1e-12)


def test_scatter_add_fast_paths_equal_np_add_at(rng):
    """The sort + reduceat path (1-D row ids, repeated and negative) and the basic-index path give
    exactly what np.add.at gives."""
    from minilm.autograd.ops_shape import scatter_add
    values = rng.standard_normal((40, 3))
    for ids in (rng.integers(-7, 7, size=40), np.zeros(40, dtype=np.int64), np.arange(40) % 7):
        fast, slow = np.zeros((7, 3)), np.zeros((7, 3))
        scatter_add(np, fast, ids, values)
        np.add.at(slow, ids, values)
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)
    fast, slow = np.zeros((7, 3)), np.zeros((7, 3))
    scatter_add(np, fast, (slice(1, 5), slice(None)), values[:4])
    np.add.at(slow, (slice(1, 5), slice(None)), values[:4])
    np.testing.assert_array_equal(fast, slow)


def test_getitem_with_repeated_rows_and_slices(rng):
    x = t64(rng, 5, 4)
    assert gradcheck(lambda v: v[np.array([0, 3, 3, -2, 1])] * 1.5, [x])
    assert gradcheck(lambda v: v[1:4, ::2], [x])


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("tq,tk", [(5, 5), (1, 4), (3, 6)])
def test_scaled_dot_product_attention(rng, causal, tq, tk):
    q, k, v = t64(rng, 2, 2, tq, 3), t64(rng, 2, 2, tk, 3), t64(rng, 2, 2, tk, 4)
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=causal), [q, k, v])


def test_scaled_dot_product_attention_with_padding_mask_and_empty_rows(rng):
    q, k, v = t64(rng, 2, 2, 4, 3), t64(rng, 2, 2, 4, 3), t64(rng, 2, 2, 4, 3)
    keys = np.array([[True, True, False, False], [False, False, False, False]])  # batch 1 fully padded
    mask = keys[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert np.all(out.numpy()[1] == 0) and np.all(np.isfinite(out.numpy()))
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=mask, is_causal=True),
                     [q, k, v])


def test_attention_with_dropout(rng):
    q, k, v = t64(rng, 1, 2, 3, 4), t64(rng, 1, 2, 3, 4), t64(rng, 1, 2, 3, 4)
    fn = lambda a, b, c: F.scaled_dot_product_attention(a, b, c, dropout_p=0.2, is_causal=True,
                                                        generator=np.random.default_rng(5))
    assert gradcheck(fn, [q, k, v])


def test_gradcheck_reports_input_index_and_both_values():
    class Wrong(minilm.autograd.Function):
        def forward(self, x):
            return x * x

        def backward(self, g):
            return (g * 3.0,)       # should be 2x

    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with pytest.raises(minilm.GradcheckError, match=r"input 0 .*index \(0,\).*analytic.*numerical"):
        gradcheck(lambda v: Wrong.apply(v), [x])


def test_gradcheck_on_a_random_subset_and_float32_refused(rng):
    x = t64(rng, 50, 40)
    assert gradcheck(lambda v: v.tanh(), [x], max_elements=30)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda v: v * 2, [Tensor(np.ones(3, dtype=np.float32), requires_grad=True)])


# ----- the holes: ties, more axes, more inputs, optional pieces --------------------------------------
@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_ties_split_the_gradient_evenly(name):
    """The tie rule (documented on ops_reduce.Max, as torch.amax): every element equal to the
    extreme gets an equal share, so the shares sum to the upstream gradient.
    Finite differences cannot check a tie (the function has a kink there), so exact values."""
    sign = 1.0 if name == "max" else -1.0
    data = sign * np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    x = Tensor(data, requires_grad=True)
    out = getattr(x, name)(axis=1)
    np.testing.assert_array_equal(out.numpy(), sign * np.array([3.0, 2.0]))
    out.backward(np.array([1.0, 6.0]))
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [2.0, 2.0, 2.0]])
    y = Tensor(data, requires_grad=True)                # over all axes: two elements tie
    getattr(y, name)().backward()
    np.testing.assert_array_equal(y.grad, [[0.0, 0.5, 0.5], [0.0, 0.0, 0.0]])
    z = Tensor(sign * np.array([[4.0, 4.0], [4.0, 1.0]]), requires_grad=True)
    getattr(z, name)(axis=(0, 1), keepdims=True).backward(np.array([[3.0]]))
    np.testing.assert_array_equal(z.grad, [[1.0, 1.0], [1.0, 0.0]])


@pytest.mark.parametrize("shape,axis", [((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4), -1),
                                        ((2, 2, 3, 4), 2), ((2, 2, 3, 4), -1)])
def test_softmax_and_log_softmax_beyond_2d(rng, shape, axis):
    x = t64(rng, *shape)
    assert gradcheck(lambda v: F.softmax(v, axis=axis), [x])
    assert gradcheck(lambda v: F.log_softmax(v, axis=axis), [x])


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_cat_of_3d_tensors_on_every_axis_with_three_inputs(rng, axis):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for i, s in enumerate(shapes):
        s[axis] = i + 1                                  # sizes 1, 2, 3 along the joined axis
    a, b, c = (t64(rng, *s) for s in shapes)
    out = minilm.cat([a, b, c], axis=axis)
    np.testing.assert_array_equal(out.numpy(), np.concatenate([a.data, b.data, c.data], axis=axis))
    assert gradcheck(lambda x, y, z: minilm.cat([x, y, z], axis=axis), [a, b, c])


def test_layer_norm_with_weight_but_no_bias(rng):
    """GPT's bias=False path: a weight and no bias."""
    x, w = t64(rng, 2, 3, 6), t64(rng, 6)
    assert gradcheck(lambda v, ww: F.layer_norm(v, 6, ww, None), [x, w])


def test_attention_with_a_general_query_key_mask_and_an_explicit_scale(rng):
    q, k, v = t64(rng, 2, 2, 3, 4), t64(rng, 2, 2, 5, 4), t64(rng, 2, 2, 5, 3)
    mask = rng.random((3, 5)) < 0.6
    mask[:, 0] = True                                    # every query sees at least one key
    mask[1] = [False, True, False, True, True]
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=mask, scale=0.3),
                     [q, k, v])
    per_head = rng.random((2, 1, 3, 5)) < 0.6            # (B, 1, Tq, Tk), with a fully masked row
    per_head[..., 0] = True
    per_head[1, 0, 2] = False
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=per_head, scale=1.7),
                     [q, k, v])


def test_cross_entropy_label_smoothing_on_3d_logits(rng):
    logits3 = t64(rng, 2, 3, 5)
    targets3 = np.array([[1, 2, -100], [4, 0, 0]])
    assert gradcheck(lambda z: F.cross_entropy(z, targets3, label_smoothing=0.2), [logits3])


def test_default_tolerances_catch_a_slightly_wrong_gelu_constant(rng):
    """The tanh-GELU backward with 0.0447 instead of 0.044715 must fail gradcheck's defaults
    (it passed the old atol=1e-5, rtol=1e-3), and the right constant must pass them."""
    from minilm.autograd.ops_elementwise import _SQRT_2_OVER_PI, gelu_reference

    def gelu_with(constant):
        class TanhGelu(minilm.autograd.Function):
            def forward(self, x):
                y, _ = gelu_reference(x, "tanh")
                self.x = x
                return y

            def backward(self, g):
                x = self.x
                th = np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
                dy = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * _SQRT_2_OVER_PI * (1 + 3 * constant * x * x)
                return (g * dy,)
        return TanhGelu.apply

    x = t64(rng, 4, 5)
    assert gradcheck(gelu_with(0.044715), [x])
    assert gradcheck(gelu_with(0.0447), [x], atol=1e-5, rtol=1e-3)      # the old defaults let it through
    with pytest.raises(minilm.GradcheckError):
        gradcheck(gelu_with(0.0447), [x])
