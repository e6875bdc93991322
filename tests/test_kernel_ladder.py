"""The attention ladder: every version of the CPU and CUDA attention kernels against one float64 reference.

    CPU (Numba)   minilm.kernels.cpu.ATTENTION_VERSIONS   v1_rows, v2_online, v3_tiles, v4_blas
    CUDA          minilm.kernels.cuda.attention_ladder    the same three, run here on the CPU emulator
                  of tests/cuda_emu (and on a real GPU when one is present: marked `gpu`)

Each version must agree with `reference` below (whole matrices, float64, written from the formulas)
on fresh random inputs: odd lengths (T = 1, 7, 33, 65), D = 16 and 64, causal and padding masks,
Tq != Tk, and rows that see no key at all (out = 0, lse = -inf, zero gradient).  Outputs are
pre-filled with NaN, so an element a version forgets to write fails.  Speed is the benchmark's
business (benchmarks/bench_kernels.py), never asserted here.
"""
import importlib
import importlib.util
import math
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import minilm.kernels.cuda as cuda_kernels
from minilm.kernels.cuda import attention_ladder
from minilm.kernels.cuda import sources as cuda_sources

HERE = Path(__file__).resolve().parent
VERSIONS = ("v1_rows", "v2_online", "v3_tiles")
CPU_VERSIONS = VERSIONS + ("v4_blas",)        # v4 hands the products to BLAS: a CPU idea only
ATOL, RTOL = 2e-5, 1e-4  # float32 kernels with inputs ~ N(0, 1); measured errors are ~1e-6


def reference(q, k, v, dout, causal, key_mask, scale):
    """out, lse, dq, dk, dv of softmax(scale q k^T + masks) v, float64 with whole matrices."""
    q, k, v, dout = (a.astype(np.float64) for a in (q, k, v, dout))
    Tq, Tk = q.shape[2], k.shape[2]
    visible = np.ones((q.shape[0], 1, Tq, Tk), bool)
    if causal:  # query i sees keys j <= i + (Tk - Tq)
        visible &= np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + (Tk - Tq)
    if key_mask is not None:  # True = a real key
        visible &= key_mask[:, None, None, :]
    visible = np.broadcast_to(visible, q.shape[:3] + (Tk,))
    s = np.where(visible, scale * q @ k.swapaxes(-1, -2), -np.inf)
    any_key = visible.any(-1, keepdims=True)
    m = np.where(any_key, s.max(-1, keepdims=True), 0.0)
    e = np.where(visible, np.exp(s - m), 0.0)
    l = e.sum(-1, keepdims=True)
    p = e / np.where(any_key, l, 1.0)  # a row with no key: p = 0, so out = 0 and no gradient
    lse = np.where(any_key, m + np.log(np.where(any_key, l, 1.0)), -np.inf)[..., 0]
    dp = dout @ v.swapaxes(-1, -2)
    ds = p * (dp - (p * dp).sum(-1, keepdims=True))  # softmax Jacobian: dS = P (dP - rowsum(P dP))
    return p @ v, lse, scale * ds @ k, scale * ds.swapaxes(-1, -2) @ q, p.swapaxes(-1, -2) @ dout


# (B, H, Tq, Tk, D, causal, mask): mask "none", "random" (~30% padding keys) or "empty" (plus the
# last batch row all padding: every query of it sees no key)
CASES = [
    (1, 1, 1, 1, 16, False, "none"),
    (2, 1, 1, 1, 64, True, "empty"),
    (2, 2, 7, 7, 16, True, "random"),
    (1, 2, 33, 33, 64, False, "random"),
    (2, 1, 33, 33, 16, True, "empty"),
    (1, 1, 65, 65, 64, True, "none"),
    (2, 1, 65, 65, 16, False, "empty"),
    (1, 2, 1, 33, 16, True, "random"),   # one new token against a KV cache
    (1, 1, 65, 7, 16, True, "none"),     # Tq > Tk, causal: the first 58 rows see no key
]


def case_id(case):
    B, H, Tq, Tk, D, causal, mask = case
    return "B%dH%dq%dk%dd%d%s-%s" % (B, H, Tq, Tk, D, "-causal" if causal else "", mask)


def inputs(case):
    B, H, Tq, Tk, D, causal, mask = case
    rng = np.random.default_rng(zlib.crc32(case_id(case).encode()))
    q, dout = (rng.standard_normal((B, H, Tq, D)).astype(np.float32) for _ in range(2))
    k, v = (rng.standard_normal((B, H, Tk, D)).astype(np.float32) for _ in range(2))
    key_mask = None
    if mask != "none":
        key_mask = rng.random((B, Tk)) > 0.3
        if mask == "empty":
            key_mask[-1] = False
    return q, k, v, dout, key_mask


def check(got, case, what):
    """got = (out, lse, dq, dk, dv) as NumPy arrays; compare with the reference."""
    q, k, v, dout, key_mask = inputs(case)
    want = reference(q, k, v, dout, case[5], key_mask, 1 / math.sqrt(q.shape[-1]))
    for name, a, b in zip(("out", "lse", "dq", "dk", "dv"), got, want):
        assert a.shape == b.shape, "%s %s: %s has shape %s, want %s" % (what, case_id(case), name, a.shape, b.shape)
        np.testing.assert_allclose(a, b, atol=ATOL, rtol=RTOL, err_msg="%s %s: %s" % (what, case_id(case), name))
    blind = np.isneginf(want[1])  # rows that see no key: exactly 0 output and 0 gradient
    assert (got[0][blind] == 0).all() and (got[2][blind] == 0).all(), "%s %s: a blind row" % (what, case_id(case))


# ---------------------------------------------------------------- CPU (Numba)

@pytest.fixture(scope="module")
def cpu():
    pytest.importorskip("numba")
    return importlib.import_module("minilm.kernels.cpu")


def test_cpu_ladder_lists_its_versions_and_the_backend_uses_v4(cpu):
    assert tuple(cpu.ATTENTION_VERSIONS) == CPU_VERSIONS
    assert cpu.KERNELS["attention_forward"] is cpu.ATTENTION_VERSIONS["v4_blas"][0]
    assert cpu.KERNELS["attention_backward"] is cpu.ATTENTION_VERSIONS["v4_blas"][1]


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("version", CPU_VERSIONS)
def test_cpu_version_matches_reference(cpu, version, case):
    forward, backward = cpu.ATTENTION_VERSIONS[version]
    q, k, v, dout, key_mask = inputs(case)
    with cpu.poisoned_outputs():
        out, lse = forward(q, k, v, causal=case[5], key_mask=key_mask)
        grads = backward(q, k, v, out, lse, dout, causal=case[5], key_mask=key_mask)
    check((out, lse) + tuple(grads), case, "cpu " + version)


@pytest.mark.parametrize("version", CPU_VERSIONS)
def test_cpu_version_checks_its_inputs(cpu, version):
    forward, backward = cpu.ATTENTION_VERSIONS[version]
    q = np.zeros((1, 2, 4, 8), np.float32)
    with pytest.raises(TypeError, match="float32"):
        forward(q.astype(np.float64), q, q)
    with pytest.raises(ValueError, match="key_mask"):
        forward(q, q, q, key_mask=np.ones((1, 3), bool))
    with pytest.raises(ValueError, match="lse must have shape"):
        backward(q, q, q, q, np.zeros((1, 2, 5), np.float32), q)


# ---------------------------------------------------------------- CUDA on the CPU emulator

def _load_cuda_emu():
    """tests/cuda_emu as a package (the same loader as tests/test_cuda_emulated.py)."""
    name = "minilm_tests_cuda_emu"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, HERE / "cuda_emu" / "__init__.py", submodule_search_locations=[str(HERE / "cuda_emu")])
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.emu_runtime")


emu_runtime = _load_cuda_emu()
needs_emulator = pytest.mark.skipif(
    emu_runtime.find_compiler() is None or not sys.platform.startswith("linux"),
    reason="the CUDA emulator needs a C++ compiler, glibc and GNU ld")


@pytest.fixture(scope="module")
def emu():
    return emu_runtime.EmuRuntime(emu_runtime.build_library())


def run_cuda(runtime, version, case):
    forward_on, backward_on = attention_ladder.VERSIONS_ON[version]
    q, k, v, dout, key_mask = (None if a is None else runtime.xp.asarray(a) for a in inputs(case))
    out, lse = forward_on(runtime, q, k, v, causal=case[5], key_mask=key_mask)
    grads = backward_on(runtime, q, k, v, out, lse, dout, causal=case[5], key_mask=key_mask)
    to_numpy = (lambda a: a.get()) if runtime.xp is not np else np.asarray
    return tuple(to_numpy(a) for a in (out, lse) + tuple(grads))


def test_cuda_ladder_lists_three_versions_and_v3_is_the_backend_kernel():
    assert tuple(attention_ladder.VERSIONS_ON) == VERSIONS
    assert tuple(cuda_kernels.ATTENTION_VERSIONS) == VERSIONS
    assert attention_ladder.VERSIONS_ON["v3_tiles"][0] is cuda_kernels.attention.attention_forward_on


@needs_emulator
@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("version", VERSIONS)
def test_cuda_version_matches_reference_on_the_emulator(emu, version, case):
    check(run_cuda(emu, version, case), case, "cuda (emulated) " + version)


@needs_emulator
@pytest.mark.parametrize("mutation", [
    # Without the rescaling, what was summed under the old max is too large by exp(m' - m).
    ("acc[c] *= alpha;", "acc[c] *= 1.0f;"),
    # A lane that publishes its probability from the wrong key breaks P V.
    ("__shfl_sync(MINILM_FULL_MASK, p, jj)", "__shfl_sync(MINILM_FULL_MASK, p, 0)"),
])
def test_a_broken_online_softmax_fails_the_comparison(tmp_path, mutation):
    """The check above can fail: version 2 with its key step broken does not match the reference."""
    original = (Path(cuda_sources.SOURCE_DIR) / "attention_v2.cu").read_text()
    old, new = mutation
    assert original.count(old) == 1
    (tmp_path / "attention_v2.cu").write_text(original.replace(old, new))
    broken = emu_runtime.EmuRuntime(emu_runtime.build_library(["attention_v2.cu"], override_dir=str(tmp_path)))
    case = (1, 1, 65, 65, 16, False, "none")  # 3 chunks of keys: in most rows the max moves after the first
    with pytest.raises(AssertionError, match="out"):
        check(run_cuda(broken, "v2_online", case), case, "broken v2")


# ---------------------------------------------------------------- CUDA on a GPU

@pytest.mark.gpu
@pytest.mark.skipif(not cuda_kernels.is_available(), reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("case", CASES + [(2, 6, 256, 256, 64, True, "none")], ids=case_id)
@pytest.mark.parametrize("version", VERSIONS)
def test_cuda_version_matches_reference_on_a_gpu(version, case):
    from minilm.kernels.cuda.runtime import CupyRuntime
    check(run_cuda(CupyRuntime(poison=True), version, case), case, "cuda (gpu) " + version)
