"""The CUDA kernels on a real GPU against float64 NumPy references (same cases as the emulator).

Marked `gpu`; skipped unless CuPy imports and a CUDA device is present. Outputs are pre-filled
with NaN (CupyRuntime(poison=True)) so an element a kernel never writes fails.
"""
import importlib.util
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import minilm.kernels.cuda as cuda_kernels

HERE = Path(__file__).resolve().parent


def _load_parity():
    name = "minilm_tests_cuda_emu"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, HERE / "cuda_emu" / "__init__.py",
            submodule_search_locations=[str(HERE / "cuda_emu")])
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.parity")


parity = _load_parity()

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cuda_kernels.is_available(), reason="needs CuPy and a CUDA device"),
]


@pytest.fixture(scope="module")
def gpu():
    from minilm.kernels.cuda.runtime import CupyRuntime
    return CupyRuntime(poison=True)


@pytest.mark.parametrize("case", parity.ATTENTION_CASES, ids=str)
def test_attention_matches_reference(gpu, case):
    parity.check_attention(gpu, case, seed=zlib.crc32(str(case).encode()))


@pytest.mark.parametrize("case", [parity.AttentionCase(2, 6, 256, 256, 64, True),       # GPT small
                                  parity.AttentionCase(2, 4, 128, 128, 64, False, "random")],
                         ids=str)
def test_attention_matches_reference_at_model_sizes(gpu, case):
    parity.check_attention(gpu, case, seed=11)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", parity.GELU_SHAPES + [(4, 256, 1536)], ids=str)
def test_gelu_matches_reference(gpu, shape, approximate):
    parity.check_gelu(gpu, shape, approximate, seed=len(shape) * 100 + shape[-1])


def test_gelu_grid_stride_loop(gpu, monkeypatch):
    from minilm.kernels.cuda import gelu
    monkeypatch.setattr(gelu, "MAX_BLOCKS", 2)
    parity.check_gelu(gpu, (2, 513), "none", seed=5)


@pytest.mark.parametrize("case", parity.LAYER_NORM_CASES + [parity.LayerNormCase((16, 256, 384))],
                         ids=str)
def test_layer_norm_matches_reference(gpu, case):
    parity.check_layer_norm(gpu, case, seed=sum(case.shape))


@pytest.mark.parametrize("case", parity.CROSS_ENTROPY_CASES + [parity.CrossEntropyCase(128, 50257, 0.1)],
                         ids=str)
def test_cross_entropy_matches_reference(gpu, case):
    parity.check_cross_entropy(gpu, case, seed=case.n * 1000 + case.v)


def test_public_api_on_cupy_arrays():
    import cupy
    rng = np.random.default_rng(0)
    q = cupy.asarray(rng.standard_normal((1, 2, 9, 16)).astype(np.float32))
    out, lse = cuda_kernels.KERNELS["attention_forward"](q, q, q, causal=True)
    dq, dk, dv = cuda_kernels.KERNELS["attention_backward"](q, q, q, out, lse, out, causal=True)
    assert isinstance(dq, cupy.ndarray) and dq.shape == q.shape
    y = cuda_kernels.gelu_forward(q, "tanh")
    y, mean, rstd = cuda_kernels.layer_norm_forward(q, None, None, 1e-5)
    assert mean.shape == (1, 2, 9)
    logits = cupy.asarray(rng.standard_normal((6, 10)).astype(np.float32))
    targets = cupy.asarray(np.array([1, 2, -100, 3, 4, 9]))
    loss_sum, n_counted, lse = cuda_kernels.cross_entropy_forward(logits, targets)
    assert int(n_counted) == 5 and np.isfinite(float(loss_sum))
    with pytest.raises(TypeError, match="must be a cupy array"):
        cuda_kernels.gelu_forward(np.ones(3, np.float32))


def test_attention_backward_is_deterministic(gpu):
    # No atomics: two runs give the same bits.
    import cupy
    case = parity.AttentionCase(2, 3, 100, 100, 64, True, "random")
    q, k, v, dout, mask = parity.attention_inputs(case, np.random.default_rng(2))
    q, k, v, dout, mask = (cupy.asarray(a) for a in (q, k, v, dout, mask))
    out, lse = cuda_kernels.attention_forward(q, k, v, causal=True, key_mask=mask)
    first = cuda_kernels.attention_backward(q, k, v, out, lse, dout, causal=True, key_mask=mask)
    second = cuda_kernels.attention_backward(q, k, v, out, lse, dout, causal=True, key_mask=mask)
    for a, b in zip(first, second):
        assert bool((a == b).all())
