"""`detect_anomaly()`: name the op where a NaN or inf was born.

A non-finite loss says that something went wrong, not where: one inf in an
early layer turns every value after it into inf or NaN. Inside

    with minilm.detect_anomaly(step=17):
        loss = model(x); loss.backward()

every op checks its own output. The first one whose inputs were all finite
but whose output is not (in forward), or whose incoming gradient and inputs
were finite but a gradient it returns is not (in backward), raises
AnomalyError naming itself, the phase, its input shapes and the step. Ops
downstream of the birthplace received a non-finite input, so they are never
blamed. Off by default: the engine then pays one boolean check per op.
"""
import math

_state = {"enabled": False, "step": None}


def is_anomaly_enabled():
    return _state["enabled"]


class AnomalyError(RuntimeError):
    """The first op that turned finite values into NaN or inf.

    Attributes: op (e.g. "Log"), phase ("forward" or "backward"), input_shapes
    (a tuple of shapes), step (as given to detect_anomaly, or None), found
    ("nan" or "inf").
    """

    def __init__(self, op, phase, input_shapes, step=None, found="nan"):
        self.op, self.phase, self.input_shapes, self.step, self.found = op, phase, input_shapes, step, found
        shapes = ", ".join(str(tuple(s)) for s in input_shapes) or "()"
        what = found if phase == "forward" else f"{found} in a gradient"
        given = "finite inputs" if phase == "forward" else "a finite incoming gradient and finite inputs"
        where = f" at step {step}" if step is not None else ""
        super().__init__(f"detect_anomaly: {op}.{phase} produced {what} from {given} "
                         f"of shapes {shapes}{where}")


class detect_anomaly:
    """Context manager: raise AnomalyError at the first op that creates a NaN or inf.

    step: put into the error (e.g. the training step being replayed). Nested
    contexts work; leaving one restores whatever was in force before it.
    Checking every array costs a pass over it, so use this to diagnose, not to train.
    """

    def __init__(self, step=None):
        self.step = step

    def __enter__(self):
        self._previous = dict(_state)
        _state["enabled"] = True
        if self.step is not None:
            _state["step"] = self.step
        return self

    def __exit__(self, *exc):
        _state.update(self._previous)
        return False


def _is_float_array(a):
    return hasattr(a, "dtype") and hasattr(a, "shape") and a.dtype.kind in "fc"


def _first_nonfinite(xp, values):
    """'nan' or 'inf' for the first non-finite float among arrays/numbers; None if all finite."""
    for v in values:
        if _is_float_array(v):
            if not bool(xp.isfinite(v).all()):
                return "nan" if bool(xp.isnan(v).any()) else "inf"
        elif isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else "inf"
    return None


def check_forward(op, arrays, options, out):
    """Called by Function.apply while detect_anomaly is on."""
    # Remember whether every input, constants and options included, was finite: backward
    # sees only the Tensor inputs, and must not blame x * nan for the NaN of its constant.
    op.anomaly_inputs_finite = _first_nonfinite(op.xp, list(arrays) + list(options.values())) is None
    found = _first_nonfinite(op.xp, [out])
    if found is None or not op.anomaly_inputs_finite:
        return
    shapes = tuple(tuple(a.shape) for a in arrays if hasattr(a, "shape"))
    raise AnomalyError(op.name, "forward", shapes, _state["step"], found)


def check_backward(op, grad_output, input_grads):
    """Called by Tensor.backward for each op while detect_anomaly is on."""
    found = _first_nonfinite(op.xp, [g for g in input_grads if g is not None])
    if found is None or not getattr(op, "anomaly_inputs_finite", True):
        return
    inputs = [t.data for t in op.inputs if t is not None]
    if _first_nonfinite(op.xp, [grad_output] + inputs) is not None:
        return
    shapes = tuple(tuple(t.shape) for t in op.inputs if t is not None)
    raise AnomalyError(op.name, "backward", shapes, _state["step"], found)
