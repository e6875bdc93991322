"""Training must not leak: the graph of each step is freed by backward.

Resident memory (RSS) depends on the allocator, so instead the test measures
what minilm controls: the number of live Tensors and ops (with the garbage
collector off, so a reference cycle counts as a leak too: it would hold a
step's arrays until the next collection), and the bytes of live NumPy array
buffers (NumPy reports them to tracemalloc in its own domain; Python's own
small objects are left out: free lists make their traced size drift).
"""
import gc
import tracemalloc

import numpy as np

import minilm.nn.functional as F
from minilm import Tensor
from minilm.autograd import Function


def live_tensors_and_ops():
    # type(), not isinstance(): isinstance reads __class__, which some modules' objects in the
    # process (PyTorch's deprecated aliases, if another test imported torch) answer with a warning.
    return sum(issubclass(type(o), (Tensor, Function)) for o in gc.get_objects())


def live_array_bytes():
    numpy_only = [tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)]
    return sum(t.size for t in tracemalloc.take_snapshot().filter_traces(numpy_only).traces)


def test_200_training_steps_of_an_mlp_keep_live_objects_and_bytes_flat():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    w1 = Tensor(rng.standard_normal((32, 128)).astype(np.float32) * 0.1, requires_grad=True)
    b1 = Tensor(np.zeros(128, np.float32), requires_grad=True)
    w2 = Tensor(rng.standard_normal((128, 10)).astype(np.float32) * 0.1, requires_grad=True)
    params = [w1, b1, w2]
    counts, traced, losses = {}, {}, []

    def step():
        h = F.gelu(Tensor(x) @ w1 + b1)
        loss = F.cross_entropy(F.layer_norm(h, 128) @ w2, y)
        loss.backward()
        for p in params:
            p.data -= 0.1 * p.grad
            p.grad = None
        losses.append(loss.item())

    step()                             # compile/load any kernels before measuring
    gc.collect()
    gc.disable()                       # cycles must not be cleaned up behind the test's back
    tracemalloc.start()
    try:
        for i in range(200):
            step()
            if i in (20, 199):
                counts[i] = live_tensors_and_ops()
                traced[i] = live_array_bytes()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert losses[-1] < losses[0] * 0.5          # it did learn something
    assert counts[199] == counts[20], f"live Tensors/ops grew from {counts[20]} to {counts[199]} in 179 steps"
    # Measured: exactly flat. A leak of one (64, 128) float32 array per step would add 5.9 MB.
    growth = traced[199] - traced[20]
    assert growth < 16 * 1024, f"live NumPy arrays grew by {growth / 1024:.0f} KB in 179 steps"
