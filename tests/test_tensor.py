"""The Tensor object and the backward pass itself."""
import numpy as np
import pytest

import minilm
from minilm import Tensor


def test_python_numbers_default_to_float32_arrays_keep_their_dtype():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(3.0).dtype == np.float32
    assert Tensor([1, 2]).dtype == np.int64
    assert Tensor(np.zeros(2, dtype=np.float64)).dtype == np.float64
    assert Tensor([1.0], dtype=np.float64).dtype == np.float64


def test_requires_grad_on_integer_tensor_is_an_error_naming_the_dtype():
    with pytest.raises(TypeError, match="int64"):
        Tensor([1, 2, 3], requires_grad=True)


def test_basic_properties_and_conversions():
    t = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    assert t.shape == (2, 3) and t.ndim == 2 and t.numel() == 6 and len(t) == 2
    assert isinstance(t.numpy(), np.ndarray)
    assert Tensor([[4.5]]).item() == 4.5
    with pytest.raises(ValueError, match="one element"):
        t.item()
    d = (t * 2).detach()
    assert not d.requires_grad and d.is_leaf
    assert "requires_grad=True" in repr(t)


def test_backward_computes_chain_rule():
    x = Tensor([2.0, 3.0], requires_grad=True)
    y = (x * x * 3.0 + x).sum()          # dy/dx = 6x + 1
    y.backward()
    np.testing.assert_allclose(x.grad, [13.0, 19.0])


def test_tensor_used_twice_accumulates_both_gradients():
    a = Tensor([1.0, -2.0], requires_grad=True)
    b = a + a
    b.sum().backward()
    np.testing.assert_allclose(a.grad, [2.0, 2.0])
    c = Tensor([3.0], requires_grad=True)
    (c * c).sum().backward()
    np.testing.assert_allclose(c.grad, [6.0])


def test_grads_accumulate_across_backward_calls_until_reset():
    w = Tensor([1.0], requires_grad=True)
    (w * 2).sum().backward()
    (w * 3).sum().backward()
    np.testing.assert_allclose(w.grad, [5.0])


def test_long_chain_does_not_hit_recursion_limit():
    x = Tensor([1.0], requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 10_000], rtol=1e-3)


def test_graph_is_freed_after_backward_and_second_backward_is_a_clear_error():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.copy()
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * first)


def test_backward_on_non_scalar_without_grad_names_the_shape():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
        (x * 2).backward()
    (x * 2).backward(np.ones((2, 3)))
    np.testing.assert_allclose(x.grad, 2 * np.ones((2, 3)))


def test_backward_with_wrong_grad_shape_is_an_error():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        (x * 2).backward(np.ones(3))


def test_backward_on_tensor_without_grad_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).backward()


def test_broadcast_gradients_are_summed_back_to_each_input_shape():
    a = Tensor(np.ones((2, 1, 4)), requires_grad=True)
    b = Tensor(np.ones((3, 1)), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == (2, 1, 4) and b.grad.shape == (3, 1)
    np.testing.assert_allclose(a.grad, np.full((2, 1, 4), 3.0))
    np.testing.assert_allclose(b.grad, np.full((3, 1), 8.0))


def test_no_grad_records_nothing():
    x = Tensor([1.0], requires_grad=True)
    with minilm.no_grad():
        y = x * 2
    assert not y.requires_grad and y._ctx is None
    assert minilm.is_grad_enabled()

    @minilm.no_grad()
    def f(t):
        return t * 3
    assert not f(x).requires_grad


def test_item_assignment_is_refused_with_advice():
    with pytest.raises(TypeError, match="masked_fill"):
        Tensor([1.0])[0] = 2.0


def test_numpy_array_on_the_left_dispatches_to_tensor():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = np.array([3.0, 4.0], dtype=np.float32) * x
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 4.0])


def test_scalars_keep_float32():
    x = Tensor([1.0, 2.0])
    assert (x * 2.5 + 1).dtype == np.float32
    assert (2.0 / x).dtype == np.float32


def test_retain_grad_keeps_intermediate_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    h = (x * 3).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * h.data)


def test_comparisons_give_boolean_tensors():
    x = Tensor([1.0, 2.0, 3.0])
    assert (x > 1.5).dtype == bool
    np.testing.assert_array_equal((x > 1.5).numpy(), [False, True, True])
