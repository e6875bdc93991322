"""Softmax + cross-entropy on the GPU: the kernels of cross_entropy.cu on CuPy arrays.

    cross_entropy_forward(logits (N, V), targets (N,), *, ignore_index=-100)
        -> (loss_sum, n_counted, lse)
        lse_r = log sum_c exp(logits[r, c]); loss_sum = sum over counted rows of
        lse_r - logits[r, targets[r]]; a row is counted when targets[r] != ignore_index.
        loss_sum (float32) and n_counted (int64) are 0-d arrays on the GPU (float()/int()
        bring them to the host); the mean loss is loss_sum / max(n_counted, 1).
    cross_entropy_backward(logits, targets, lse, grad_scale, *, ignore_index=-100) -> dlogits
        grad_scale * (softmax(logits) - onehot(targets)) on counted rows, 0 on ignored rows.

The (N, V) softmax is never stored: the backward kernel rebuilds it from lse.
"""
import numpy as np

from .runtime import float32_input, get_runtime, int32, integer_input

SOURCE = "cross_entropy.cu"
THREADS = 128  # must equal CE_THREADS in cross_entropy.cu (a multiple of 32)


def _check(runtime, op, logits, targets, ignore_index):
    logits = float32_input(runtime, logits, op, "logits")
    targets = integer_input(runtime, targets, op, "targets", np.int64)
    if logits.ndim != 2 or tuple(targets.shape) != tuple(logits.shape[:1]):
        raise ValueError(f"{op}: expected logits (N, V) and targets (N,), got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    n, v = logits.shape
    if v == 0:
        raise ValueError(f"{op}: logits of shape {tuple(logits.shape)} have no classes")
    counted = targets != ignore_index
    bad = counted & ((targets < 0) | (targets >= v))
    if bool(bad.any()):  # one device->host sync; a wrong target must not pass silently
        first = int(targets[bad][0])
        raise IndexError(f"{op}: target {first} is outside [0, {v}) and is not "
                         f"ignore_index={ignore_index}")
    return logits, targets, counted, n, v


def cross_entropy_forward_on(runtime, logits, targets, *, ignore_index=-100):
    op = "cross_entropy_forward"
    logits, targets, counted, n, v = _check(runtime, op, logits, targets, ignore_index)
    lse = runtime.empty((n,))
    row_loss = runtime.empty((n,))
    runtime.launch(SOURCE, "cross_entropy_forward_kernel", (n, 1, 1), (THREADS, 1, 1),
                   (logits, targets, lse, row_loss, int32(v, op, "V"), np.int64(ignore_index)))
    loss_sum = row_loss.sum(dtype=np.float32)  # ignored rows hold 0
    n_counted = counted.sum(dtype=np.int64)
    return loss_sum, n_counted, lse


def cross_entropy_backward_on(runtime, logits, targets, lse, grad_scale, *, ignore_index=-100):
    op = "cross_entropy_backward"
    logits, targets, _, n, v = _check(runtime, op, logits, targets, ignore_index)
    lse = float32_input(runtime, lse, op, "lse")
    if tuple(lse.shape) != (n,):
        raise ValueError(f"{op}: lse has shape {tuple(lse.shape)}, expected ({n},)")
    dlogits = runtime.empty((n, v))
    runtime.launch(SOURCE, "cross_entropy_backward_kernel", (n, 1, 1), (THREADS, 1, 1),
                   (logits, targets, lse, dlogits, int32(v, op, "V"), np.int64(ignore_index),
                    np.float32(float(grad_scale))))
    return dlogits


def cross_entropy_forward(logits, targets, *, ignore_index=-100):
    """Fused log-softmax + NLL over rows of float32 CuPy logits -> (loss_sum, n_counted, lse)."""
    return cross_entropy_forward_on(get_runtime(), logits, targets, ignore_index=ignore_index)


def cross_entropy_backward(logits, targets, lse, grad_scale, *, ignore_index=-100):
    """dlogits = grad_scale * (softmax - onehot) on counted rows, 0 on ignored rows."""
    return cross_entropy_backward_on(get_runtime(), logits, targets, lse, grad_scale,
                                     ignore_index=ignore_index)
