"""Backend selection: names, the environment variable, and the fallback that never crashes."""
import importlib.util

import numpy as np
import pytest

import minilm
import minilm.nn.functional as F
from minilm import backend


@pytest.fixture(autouse=True)
def restore_backend():
    previous = minilm.get_backend()
    yield
    minilm.set_backend(previous)


def test_unknown_names_are_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        minilm.set_backend("tpu")
    monkeypatch.setenv("MINILM_BACKEND", "fast")
    with pytest.raises(ValueError, match="MINILM_BACKEND='fast'"):
        minilm.set_backend(None)


def test_environment_variable_chooses_the_backend(monkeypatch):
    monkeypatch.setenv("MINILM_BACKEND", "numpy")
    assert minilm.set_backend(None) == "numpy"


def test_a_backend_that_cannot_load_falls_back_with_one_warning(monkeypatch):
    def broken(name):
        raise ImportError("simulated: numba is not installed")
    monkeypatch.setattr(backend, "_load_kernels", broken)
    with pytest.warns(RuntimeWarning, match="falling back to the NumPy reference"):
        assert minilm.set_backend("numba") == "numpy"
    x = minilm.Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    F.gelu(x).sum().backward()                       # and everything still runs
    assert x.grad.shape == (2, 3)


def test_cuda_without_a_gpu_falls_back_instead_of_crashing():
    from minilm.kernels import cuda
    if cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.warns(RuntimeWarning, match="'cuda' is unavailable"):
        assert minilm.set_backend("cuda") == "numpy"


@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")
def test_numba_backend_uses_kernels_only_for_float32_numpy_arrays(monkeypatch):
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    assert minilm.set_backend("numba") == "numba"
    import numba
    assert numba.get_num_threads() == 1              # see backend._one_numba_thread_unless_asked
    assert backend.get_kernel("gelu_forward", np.ones(3, np.float32)) is not None
    assert backend.get_kernel("gelu_forward", np.ones(3, np.float64)) is None
