"""minilm.detect_anomaly (minilm/autograd/anomaly.py): the first op that turns finite values
into NaN/inf is named (op, phase, input shapes, step); ops downstream of it are not."""
import numpy as np
import pytest

import minilm
import minilm.nn.functional as F
from minilm import AnomalyError, detect_anomaly
from minilm.autograd import anomaly

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")     # NumPy's divide/overflow warnings


def leaf(values, dtype=np.float64):
    return minilm.Tensor(np.asarray(values, dtype=dtype), requires_grad=True)


def test_off_by_default_nonfinite_values_flow_silently():
    assert not anomaly.is_anomaly_enabled()
    x = leaf(np.zeros((4, 5)))
    y = x.log().sum()
    assert y.item() == -np.inf
    x.sqrt().sum().backward()
    assert np.isinf(x.grad).all()


def test_log_of_zero_is_named_in_forward_with_shapes_and_step():
    x = leaf(np.zeros((4, 5)))
    with detect_anomaly(step=17):
        with pytest.raises(AnomalyError) as info:
            x.log()
    err = info.value
    assert (err.op, err.phase, err.input_shapes, err.step, err.found) == ("Log", "forward", ((4, 5),), 17, "inf")
    assert str(err) == "detect_anomaly: Log.forward produced inf from finite inputs of shapes (4, 5) at step 17"
    assert isinstance(err, RuntimeError)


def test_sqrt_of_zero_is_named_in_backward():
    """sqrt(0) = 0 is fine; its gradient 1 / (2 sqrt(0)) is inf. Only backward sees it."""
    x = leaf([0.0, 1.0, 4.0])
    with detect_anomaly(step=3):
        y = x.sqrt()                                   # forward: no error
        with pytest.raises(AnomalyError) as info:
            y.sum().backward()
    err = info.value
    assert (err.op, err.phase, err.input_shapes, err.step) == ("Sqrt", "backward", ((3,),), 3)
    assert "Sqrt.backward produced inf in a gradient" in str(err) and "(3,)" in str(err)


def test_division_by_zero_names_div_with_both_shapes():
    a, b = leaf(np.ones((2, 3))), leaf([1.0, 0.0, 2.0])
    with detect_anomaly():
        with pytest.raises(AnomalyError) as info:
            a / b
    err = info.value
    assert (err.op, err.phase, err.input_shapes, err.step) == ("Div", "forward", ((2, 3), (3,)), None)
    assert "at step" not in str(err)                   # no step given: none claimed
    with detect_anomaly():                             # 0 / 0 is NaN, reported as such
        with pytest.raises(AnomalyError, match="Div.forward produced nan"):
            leaf([0.0]) / leaf([0.0])


def test_nan_from_zero_times_inf_in_a_model_names_the_birthplace_not_the_nan():
    """Linear -> exp overflows to inf (float32) -> masking multiplies by 0 -> NaN loss.
    The NaN appears in Mul, but the inf was born in Exp: Exp is named."""
    lin = minilm.nn.Linear(3, 4, generator=np.random.default_rng(0))
    x = minilm.Tensor(np.full((2, 3), 100.0, dtype=np.float32))
    mask = minilm.Tensor(np.array([[1, 0, 1, 0]] * 2, dtype=np.float32))

    def model():
        h = lin(x) * 10.0 + 200.0                      # finite, but exp(h) overflows float32
        return (h.exp() * mask).sum()

    assert np.isnan(model().item())                    # without the detector: only a NaN loss
    with detect_anomaly(step=5):
        with pytest.raises(AnomalyError) as info:
            model()
    assert (info.value.op, info.value.phase, info.value.input_shapes) == ("Exp", "forward", ((2, 4),))


def test_the_first_op_is_named_not_a_later_one_in_backward():
    """sqrt's inf gradient flows back through Mul and Add: only Sqrt is named, though
    the later ops (earlier in the forward) also return non-finite gradients."""
    x = leaf([0.0, 1.0])
    y = (x * 2.0 + 0.0)                                # Mul, Add: their backward gets inf, passes inf
    z = y.sqrt().sum()
    with detect_anomaly():
        with pytest.raises(AnomalyError) as info:
            z.backward()
    assert info.value.op == "Sqrt"


def test_an_op_given_a_nonfinite_incoming_gradient_is_not_blamed():
    x = leaf([1.0, 2.0])
    with detect_anomaly():
        y = (x * 2.0).tanh()
        y.backward(np.array([np.inf, 1.0]))            # the inf comes from outside: no op made it
    assert np.isinf(x.grad[0]) and np.isfinite(x.grad[1])


def test_an_op_given_nonfinite_inputs_is_not_blamed():
    x = leaf(np.array([0.0, 1.0]))
    with minilm.no_grad():
        inf_input = x.log()                            # born outside the detector
    with detect_anomaly():
        y = inf_input * 3.0                            # -inf in, -inf out: not a birthplace
        out = minilm.Tensor(np.zeros(2)).masked_fill(np.array([True, False]), float("-inf"))
    assert y.numpy()[0] == -np.inf and out.numpy()[0] == -np.inf   # -inf was asked for: not flagged


def test_causal_attention_and_masked_softmax_do_not_raise_in_a_gpt_step():
    """The -inf of the attention mask lives inside the op; training a tiny GPT is clean."""
    from minilm.models import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=11, n_layer=1, n_head=2, n_embd=8, block_size=6, dropout=0.0),
                generator=np.random.default_rng(0))
    idx = np.random.default_rng(1).integers(0, 11, size=(2, 6))
    with detect_anomaly(step=0):
        _, loss = model(idx, targets=idx)
        loss.backward()
    assert np.isfinite(loss.item())


def test_nested_contexts_restore_the_previous_state_also_after_an_error():
    with detect_anomaly(step=1):
        with detect_anomaly(step=2):
            with pytest.raises(AnomalyError, match="at step 2$"):
                leaf([0.0]).log()
        with pytest.raises(AnomalyError, match="at step 1$"):  # the outer step is back
            leaf([0.0]).log()
        with detect_anomaly():                          # no step given: the outer one still applies
            with pytest.raises(AnomalyError, match="at step 1$"):
                leaf([0.0]).log()
        assert anomaly.is_anomaly_enabled()
    assert not anomaly.is_anomaly_enabled()
    with pytest.raises(ValueError):
        with detect_anomaly(step=9):
            raise ValueError("boom")
    assert not anomaly.is_anomaly_enabled() and anomaly._state["step"] is None
    assert leaf([0.0]).log().item() == -np.inf          # off again


def test_fused_ops_go_through_the_detector_without_false_alarms():
    """Kernel-backed ops (LayerNorm, cross-entropy; the Numba kernels under MINILM_BACKEND=numba)
    use Function.apply too: checked like any op, and a clean float32 step raises nothing."""
    gen = np.random.default_rng(0)
    x = minilm.Tensor(gen.standard_normal((3, 8)).astype(np.float32), requires_grad=True)
    ln = minilm.nn.LayerNorm(8)
    with detect_anomaly(step=4):
        loss = F.cross_entropy(ln(x), minilm.Tensor(np.array([0, 1, 2])))
        loss.backward()
        with pytest.raises(AnomalyError) as info:
            x * 3e38                                     # float32 overflow: Mul is the birthplace
    assert info.value.op == "Mul" and np.isfinite(x.grad).all()


def test_a_non_finite_constant_is_not_blamed_on_the_op_in_backward():
    """x * nan: the NaN comes from the constant, so neither Mul.forward nor Mul.backward is its birthplace."""
    x = minilm.Tensor(np.ones((2, 3)), requires_grad=True)
    with minilm.detect_anomaly():
        (x * float("nan")).sum().backward()
    assert np.isnan(x.grad).all()
