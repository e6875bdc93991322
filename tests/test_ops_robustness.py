"""Huge logits stay finite; bad input gets an error naming the op and the shapes."""
import numpy as np
import pytest

import minilm
import minilm.nn.functional as F
from minilm import Tensor, gradcheck


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_with_logits_of_magnitude_1e4(dtype):
    x = Tensor(np.array([[1e4, -1e4, 0.0, 1e4 - 1.0], [-1e4, -1e4 + 2, 5e3, -5e3]], dtype=dtype),
               requires_grad=True)
    for fn in (lambda v: F.softmax(v), lambda v: F.log_softmax(v)):
        out = fn(x)
        assert np.all(np.isfinite(out.numpy()))
    ls = F.log_softmax(x).numpy()
    np.testing.assert_allclose(ls[0, 0], -np.log1p(np.exp(-1.0)), rtol=1e-5)
    loss = F.cross_entropy(x, np.array([1, 2]))
    assert np.isfinite(loss.item())
    np.testing.assert_allclose(loss.item(), (2e4 + np.log1p(np.exp(-1.0)) + 0.0) / 2, rtol=1e-5)
    loss.backward()
    assert np.all(np.isfinite(x.grad))


def test_gradients_correct_for_huge_logits():
    x = Tensor(np.array([[1e4, 1e4 - 1.0, 1e4 - 3.0], [-1e4, -1e4 + 0.5, 2.0]]), requires_grad=True)
    assert gradcheck(lambda v: F.log_softmax(v), [x])
    assert gradcheck(lambda v: F.softmax(v), [x])
    assert gradcheck(lambda v: F.cross_entropy(v, np.array([2, 0])), [x])


def test_matmul_shape_mismatch_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3, 4\).*\(5, 4, 2\)"):
        Tensor(np.ones((2, 3, 4))) @ Tensor(np.ones((5, 4, 2)))


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_broadcast_failure_names_op_and_shapes(op):
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((4,)))
    fn = {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b, "div": lambda: a / b}[op]
    with pytest.raises(ValueError, match=rf"{op}: cannot broadcast shapes \(2, 3\) and \(4,\)"):
        fn()


def test_other_bad_inputs_are_named():
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4, 2\)"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match="axis 5"):
        x.sum(axis=5)
    with pytest.raises(IndexError, match="token id 10 .* \\[0, 10\\)"):
        F.embedding(np.array([1, 10]), Tensor(np.ones((10, 2))))
    with pytest.raises(IndexError, match="target 7"):
        F.cross_entropy(Tensor(np.ones((2, 5))), np.array([1, 7]))
    with pytest.raises(ValueError, match=r"cross_entropy.*\(2, 5\).*\(3,\)"):
        F.cross_entropy(Tensor(np.ones((2, 5))), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="layer_norm.*weight of shape \\(4,\\)"):
        F.layer_norm(x, 3, Tensor(np.ones(4)), Tensor(np.ones(3)))
    with pytest.raises(ValueError, match="dropout: p"):
        F.dropout(x, 1.5, True)
    with pytest.raises(ValueError, match="cat.*differ"):
        minilm.cat([x, Tensor(np.ones((3, 3)))], axis=1)
    with pytest.raises(ValueError, match="scaled_dot_product_attention"):
        F.scaled_dot_product_attention(x, x, x)
    with pytest.raises(TypeError, match="boolean"):
        q = Tensor(np.ones((1, 1, 2, 2)))
        F.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((2, 2)))
    with pytest.raises(ValueError, match="gelu"):
        F.gelu(x, approximate="fast")
