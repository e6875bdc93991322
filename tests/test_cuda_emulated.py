"""The CUDA kernels of kernels/cuda/, run unchanged on the CPU, against float64 NumPy references.

tests/cuda_emu/ compiles each `.cu` file with g++ together with a header that stands in for
CUDA (threads of a block become cooperative coroutines, __syncthreads() a barrier, warp
shuffles a warp-level exchange, shared memory a region filled with NaN before every block).
The op wrappers of minilm.kernels.cuda launch through it exactly as they launch through CuPy
on a GPU, so shapes, grids, argument types and the kernels' arithmetic are all checked here.

The last tests show that the harness would catch the bugs it claims to: a kernel with one
barrier removed, one output element left unwritten, a write past the end of an array, or a
barrier that some threads skip, each fails -- on every run, since scheduling is deterministic.
"""
import importlib.util
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent


def _load_cuda_emu():
    """Import tests/cuda_emu as a package under a name that cannot clash with anything."""
    name = "minilm_tests_cuda_emu"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, HERE / "cuda_emu" / "__init__.py",
            submodule_search_locations=[str(HERE / "cuda_emu")])
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        spec.loader.exec_module(package)
    return (importlib.import_module(f"{name}.emu_runtime"),
            importlib.import_module(f"{name}.parity"))


emu_runtime, parity = _load_cuda_emu()

from minilm.kernels.cuda import attention, cross_entropy, gelu, layer_norm, sources  # noqa: E402

pytestmark = [
    pytest.mark.skipif(emu_runtime.find_compiler() is None,
                       reason="no C++ compiler (g++/c++/$CXX) to build the CUDA emulator"),
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="the CUDA emulator needs glibc ucontext and a GNU ld linker script"),
]


@pytest.fixture(scope="module")
def emu():
    return emu_runtime.EmuRuntime(emu_runtime.build_library())


def test_emulator_registers_every_catalogued_kernel(emu):
    assert sorted(emu.kernel_names()) == sorted(sources.all_kernel_names())
    assert sorted(sources.KERNELS_BY_SOURCE) == sources.cu_files()


# ---------------------------------------------------------------- parity with the references

@pytest.mark.parametrize("case", parity.ATTENTION_CASES, ids=str)
def test_attention_matches_reference(emu, case):
    parity.check_attention(emu, case, seed=zlib.crc32(str(case).encode()))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", parity.GELU_SHAPES, ids=str)
def test_gelu_matches_reference(emu, shape, approximate):
    parity.check_gelu(emu, shape, approximate, seed=len(shape) * 100 + shape[-1])


def test_gelu_grid_stride_loop_covers_more_elements_than_threads(emu, monkeypatch):
    monkeypatch.setattr(gelu, "MAX_BLOCKS", 2)  # 512 threads for 1026 elements
    parity.check_gelu(emu, (2, 513), "none", seed=5)
    assert emu.launches[-1][1] == (2, 1, 1)


@pytest.mark.parametrize("case", parity.LAYER_NORM_CASES, ids=str)
def test_layer_norm_matches_reference(emu, case):
    parity.check_layer_norm(emu, case, seed=sum(case.shape))


def test_layer_norm_parameter_gradients_over_many_chunks(emu, monkeypatch):
    monkeypatch.setattr(layer_norm, "MIN_ROWS_PER_CHUNK", 2)  # 9 rows -> 5 chunks, last one short
    parity.check_layer_norm(emu, parity.LayerNormCase((3, 3, 20)), seed=9)
    assert ("layer_norm_backward_params_partial_kernel", (1, 5, 1), (128, 1, 1)) in emu.launches


@pytest.mark.parametrize("case", parity.CROSS_ENTROPY_CASES, ids=str)
def test_cross_entropy_matches_reference(emu, case):
    parity.check_cross_entropy(emu, case, seed=case.n * 1000 + case.v)


def test_attention_grids_follow_the_block_shapes(emu):
    case = parity.AttentionCase(2, 3, 33, 50, 128, True)
    parity.check_attention(emu, case, seed=1)
    grids = {kernel: grid for kernel, grid, _ in emu.launches[-4:]}
    assert grids["attention_forward_kernel<128>"] == (6, 3, 1)        # 16 queries per block
    assert grids["attention_backward_delta_kernel"] == (50, 1, 1)     # 4 rows per block
    assert grids["attention_backward_dkdv_kernel<128>"] == (6, 7, 1)  # 8 keys per block at D=128
    assert grids["attention_backward_dq_kernel<128>"] == (6, 5, 1)    # 8 queries per block


def test_attention_propagates_a_nan_input_instead_of_hiding_it(emu):
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((1, 1, 5, 8)).astype(np.float32) for _ in range(3))
    q[0, 0, 2, 0] = np.nan
    out, lse = attention.attention_forward_on(emu, q, k, v)
    assert np.isnan(out[0, 0, 2]).all() and np.isnan(lse[0, 0, 2])   # not 0 and -inf
    assert np.isfinite(np.delete(out[0, 0], 2, axis=0)).all()


# ---------------------------------------------------------------- errors are loud

def test_wrapper_errors_name_the_op_and_shapes(emu):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 1, 4, 8)).astype(np.float32)
    with pytest.raises(TypeError, match="attention_forward: q must be float32"):
        attention.attention_forward_on(emu, q.astype(np.float64), q, q)
    with pytest.raises(ValueError, match="head dimension D = 129"):
        big = np.zeros((1, 1, 2, 129), np.float32)
        attention.attention_forward_on(emu, big, big, big)
    with pytest.raises(ValueError, match=r"key_mask has shape \(1, 3\), expected \(B, Tk\) = \(1, 4\)"):
        attention.attention_forward_on(emu, q, q, q, key_mask=np.ones((1, 3), bool))
    with pytest.raises(ValueError, match="gelu_forward: approximate must be 'none' or 'tanh'"):
        gelu.gelu_forward_on(emu, q, "sigmoid")
    with pytest.raises(ValueError, match=r"layer_norm_forward: weight has shape \(7,\)"):
        layer_norm.layer_norm_forward_on(emu, q, np.ones(7, np.float32), None)
    with pytest.raises(IndexError, match=r"target 11 is outside \[0, 5\)"):
        cross_entropy.cross_entropy_forward_on(emu, np.zeros((2, 5), np.float32), np.array([1, 11]))
    with pytest.raises(TypeError, match="must be a numpy array"):
        gelu.gelu_forward_on(emu, [1.0, 2.0])


def test_emulator_rejects_arguments_of_the_wrong_c_type(emu):
    x = emu.empty((4,))
    # n passed as int32 where the kernel takes long long: on a GPU this would be misread.
    with pytest.raises(RuntimeError, match="do not match the kernel's parameters 'FFq'"):
        emu.launch("gelu.cu", "gelu_forward_erf_kernel", (1, 1, 1), (32, 1, 1), (x, x, np.int32(4)))
    with pytest.raises(TypeError, match="argument 2 is int"):
        emu.launch("gelu.cu", "gelu_forward_erf_kernel", (1, 1, 1), (32, 1, 1), (x, x, 4))


# ---------------------------------------------------------------- the harness catches bugs

def _mutant_library(tmp_path, source, mutate):
    """Build the emulator for one `.cu` file whose text went through `mutate`."""
    original = (Path(sources.SOURCE_DIR) / source).read_text()
    changed = mutate(original)
    assert changed != original, f"the mutation did not change {source}"
    (tmp_path / source).write_text(changed)
    # Cached like the real library, by a hash of the (mutated) sources.
    return emu_runtime.EmuRuntime(emu_runtime.build_library([source], override_dir=str(tmp_path)))


def _remove_nth_after(marker, call, n=0):
    """Remove the n-th occurrence of `call` after the first occurrence of `marker`."""
    def mutate(text):
        start = text.index(marker)
        pos = start
        for _ in range(n + 1):
            pos = text.index(call, pos + 1)
        return text[:pos] + "/* removed by the test */" + text[pos + len(call):]
    return mutate


KEY_LOOP = "for (int k_start = 0; k_start < k_end; k_start += ATTN_TILE) {"
QUERY_LOOP = "for (int q_start = q_begin; q_start < Tq; q_start += ATTN_TILE) {"
RACE_CASE = parity.AttentionCase(1, 2, 33, 70, 64, False, "random")  # 3 key tiles, 3 query tiles


@pytest.mark.parametrize("barrier, mutate", [
    ("(A) after staging a K/V tile", _remove_nth_after(KEY_LOOP, "__syncthreads();", 0)),
    ("(C) before overwriting the tile", _remove_nth_after(KEY_LOOP, "__syncthreads();", 1)),
    ("(B) __syncwarp before P V", _remove_nth_after(KEY_LOOP, "__syncwarp();", 0)),
])
def test_a_missing_barrier_in_attention_forward_fails_the_comparison(emu, tmp_path, barrier, mutate):
    parity.check_attention_forward(emu, RACE_CASE, seed=7)  # the real kernel passes...
    broken = _mutant_library(tmp_path, "attention_forward.cu", mutate)
    for _ in range(2):  # ...and the broken one fails, every time
        with pytest.raises(AssertionError, match="attention"):
            parity.check_attention_forward(broken, RACE_CASE, seed=7)


class _OneFileSwapped:
    """Launch kernels of `source` on `broken`, everything else on the real library."""

    xp = np

    def __init__(self, real, broken, source):
        self.real, self.broken, self.source = real, broken, source
        self.is_array, self.contiguous, self.empty = broken.is_array, broken.contiguous, broken.empty

    def launch(self, source, kernel, grid, block, args):
        runtime = self.broken if source == self.source else self.real
        runtime.launch(source, kernel, grid, block, args)


def test_a_missing_barrier_in_attention_backward_fails_the_comparison(emu, tmp_path):
    # Barrier (A) of the dK/dV kernel's query loop is gone; the forward pass is the real one.
    broken = _mutant_library(tmp_path, "attention_backward.cu",
                             _remove_nth_after(QUERY_LOOP, "__syncthreads();", 0))
    runtime = _OneFileSwapped(emu, broken, "attention_backward.cu")
    with pytest.raises(AssertionError, match="attention .*: (dk|dv)"):
        parity.check_attention(runtime, RACE_CASE, seed=3)


def test_an_unwritten_output_element_is_caught_by_the_nan_poison(emu, tmp_path):
    def skip_last_row(text):  # dq of the last query row is never written
        start = text.index("attention_backward_dq_kernel(")
        old = "if (i >= Tq) continue;"
        pos = text.index(old, start)
        return text[:pos] + "if (i >= Tq - 1) continue;" + text[pos + len(old):]

    broken = _mutant_library(tmp_path, "attention_backward.cu", skip_last_row)
    runtime = _OneFileSwapped(emu, broken, "attention_backward.cu")
    with pytest.raises(AssertionError, match="dq"):
        parity.check_attention(runtime, parity.AttentionCase(1, 1, 5, 5, 8, False), seed=4)


def test_a_write_past_the_end_of_an_array_is_caught(tmp_path):
    broken = _mutant_library(tmp_path, "gelu.cu",
                             lambda t: t.replace("i < n; i += stride", "i <= n; i += stride", 1))
    with pytest.raises(AssertionError, match="wrote outside the bounds"):
        gelu.gelu_forward_on(broken, np.ones(100, np.float32))


def test_a_barrier_that_some_threads_skip_is_reported(tmp_path):
    def early_return(text):
        marker = "    float s = 0.0f;\n"  # the first statement before the first block reduction
        return text.replace(marker, "    if (threadIdx.x == 5) return;\n" + marker, 1)

    broken = _mutant_library(tmp_path, "layer_norm.cu", early_return)
    with pytest.raises(RuntimeError, match="deadlock"):
        layer_norm.layer_norm_forward_on(broken, np.ones((2, 8), np.float32), None, None)


def test_build_cache_reuses_the_library(emu):
    assert emu_runtime.build_library() == emu.library


def test_layer_norm_rows_whose_float32_variance_overflows(emu):
    """Rows of scale 1e20 (x^2 ~ 1e40 > float32's 3.4e38) are normalised like any other row,
    forward and backward, as the NumPy reference and the Numba kernel do (the kernel redoes
    such a row in double)."""
    rng = np.random.default_rng(20)
    x = rng.standard_normal((4, 200)).astype(np.float32)
    x[1:3] *= np.float32(1e20)
    dy = rng.standard_normal((4, 200)).astype(np.float32)
    weight, bias = rng.standard_normal(200).astype(np.float32), rng.standard_normal(200).astype(np.float32)
    y, mean, rstd = layer_norm.layer_norm_forward_on(emu, x, weight, bias)
    dx, dweight, dbias = layer_norm.layer_norm_backward_on(emu, dy, x, weight, mean, rstd)
    want = parity.reference.layer_norm(x, weight, bias, 1e-5, dy)
    for name, got, ref in zip(("y", "mean", "rstd", "dx", "dweight", "dbias"),
                              (y, mean, rstd, dx, dweight, dbias), want):
        assert np.all(np.isfinite(got)), f"layer_norm at scale 1e20: {name} is not finite"
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max(),
                                   err_msg=f"layer_norm at scale 1e20: {name}")
