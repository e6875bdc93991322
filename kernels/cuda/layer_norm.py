"""LayerNorm on the GPU: the kernels of layer_norm.cu behind functions on CuPy arrays.

    layer_norm_forward(x, weight, bias, eps) -> (y, mean, rstd)
        over the last axis C of x (any number of leading axes, N rows in all):
        mean = sum(x)/C, rstd = 1/sqrt(sum((x - mean)^2)/C + eps), y = (x - mean) rstd w + b
        mean and rstd have shape x.shape[:-1]
    layer_norm_backward(dy, x, weight, mean, rstd) -> (dx, dweight, dbias)
        dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy w, xhat = (x - mean) rstd
        dweight = sum over rows of dy xhat, dbias = sum over rows of dy

Ba, Kiros & Hinton 2016. weight/bias may be None (treated as ones/zeros). float32.
"""
import numpy as np

from .runtime import MAX_GRID_Y, ceil_div, float32_input, get_runtime, int32

SOURCE = "layer_norm.cu"
THREADS = 128          # must equal LN_THREADS in layer_norm.cu (a multiple of 32)
PARAM_THREADS = 128    # columns per block in the dweight/dbias kernels
MIN_ROWS_PER_CHUNK = 32


def _rows_and_columns(op, x):
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"{op}: x must have a non-empty last axis, got shape {tuple(x.shape)}")
    c = x.shape[-1]
    return x.size // c, c


def _param(runtime, p, c, fill, op, name):
    if p is None:
        return runtime.contiguous(runtime.xp.full((c,), fill, dtype=np.float32))
    p = float32_input(runtime, p, op, name)
    if tuple(p.shape) != (c,):
        raise ValueError(f"{op}: {name} has shape {tuple(p.shape)}, expected ({c},) to match "
                         f"the last axis of x")
    return p


def layer_norm_forward_on(runtime, x, weight, bias, eps=1e-5):
    op = "layer_norm_forward"
    x = float32_input(runtime, x, op, "x")
    n, c = _rows_and_columns(op, x)
    weight = _param(runtime, weight, c, 1.0, op, "weight")
    bias = _param(runtime, bias, c, 0.0, op, "bias")
    y = runtime.empty(x.shape)
    mean = runtime.empty(x.shape[:-1])
    rstd = runtime.empty(x.shape[:-1])
    runtime.launch(SOURCE, "layer_norm_forward_kernel", (n, 1, 1), (THREADS, 1, 1),
                   (x, weight, bias, y, mean, rstd, int32(c, op, "C"), np.float32(eps)))
    return y, mean, rstd


def layer_norm_backward_on(runtime, dy, x, weight, mean, rstd):
    op = "layer_norm_backward"
    x = float32_input(runtime, x, op, "x")
    dy = float32_input(runtime, dy, op, "dy")
    if dy.shape != x.shape:
        raise ValueError(f"{op}: dy has shape {tuple(dy.shape)} but x has {tuple(x.shape)}")
    n, c = _rows_and_columns(op, x)
    weight = _param(runtime, weight, c, 1.0, op, "weight")
    mean = float32_input(runtime, mean, op, "mean")
    rstd = float32_input(runtime, rstd, op, "rstd")
    for name, a in (("mean", mean), ("rstd", rstd)):
        if a.size != n:
            raise ValueError(f"{op}: {name} has shape {tuple(a.shape)} ({a.size} values) but x "
                             f"of shape {tuple(x.shape)} has {n} rows")
    c32 = int32(c, op, "C")

    dx = runtime.empty(x.shape)
    runtime.launch(SOURCE, "layer_norm_backward_dx_kernel", (n, 1, 1), (THREADS, 1, 1),
                   (dy, x, weight, mean, rstd, dx, c32))

    # dweight/dbias: column sums over all rows, in two deterministic steps (see layer_norm.cu).
    rows_per_chunk = max(MIN_ROWS_PER_CHUNK, ceil_div(n, MAX_GRID_Y))
    chunks = ceil_div(n, rows_per_chunk)
    dweight_partial = runtime.empty((chunks, c))
    dbias_partial = runtime.empty((chunks, c))
    col_blocks = ceil_div(c, PARAM_THREADS)
    runtime.launch(SOURCE, "layer_norm_backward_params_partial_kernel", (col_blocks, chunks, 1),
                   (PARAM_THREADS, 1, 1),
                   (dy, x, mean, rstd, dweight_partial, dbias_partial, int32(n, op, "N"), c32,
                    int32(rows_per_chunk, op, "rows_per_chunk")))
    dweight = runtime.empty((c,))
    dbias = runtime.empty((c,))
    runtime.launch(SOURCE, "layer_norm_backward_params_reduce_kernel", (col_blocks, 1, 1),
                   (PARAM_THREADS, 1, 1),
                   (dweight_partial, dbias_partial, dweight, dbias, c32,
                    int32(chunks, op, "chunks")))
    return dx, dweight, dbias


def layer_norm_forward(x, weight, bias, eps=1e-5):
    """LayerNorm over the last axis of a float32 CuPy array -> (y, mean, rstd)."""
    return layer_norm_forward_on(get_runtime(), x, weight, bias, eps)


def layer_norm_backward(dy, x, weight, mean, rstd):
    """Gradients of LayerNorm -> (dx, dweight, dbias), from the forward's mean and rstd."""
    return layer_norm_backward_on(get_runtime(), dy, x, weight, mean, rstd)
