"""Every CUDA source compiles for sm_80 and sm_90 without a GPU, and no kernel spills registers.

Uses minilm.kernels.cuda.compile_check: NVRTC through cupy.cuda.nvrtc when available
(pip install cupy-cuda13x "cuda-toolkit[nvrtc]==13.*"), else nvcc. Skipped only when neither
compiler is present.
"""
import pytest

from minilm.kernels.cuda import compile_check, sources

ROUTES = compile_check.available_routes()
STATIC_SHARED_LIMIT = 48 * 1024  # bytes of static __shared__ memory a block may declare

pytestmark = pytest.mark.skipif(
    not ROUTES, reason="neither NVRTC (cupy-cuda13x + cuda-toolkit[nvrtc]) nor nvcc is available")


@pytest.fixture(scope="module")
def results():
    return compile_check.check_all(compile_check.DEFAULT_ARCHS)


def test_every_source_compiles_for_every_arch(results):
    compiled = {(r.source, r.arch) for r in results}
    assert compiled == {(s, a) for s in sources.cu_files() for a in compile_check.DEFAULT_ARCHS}
    for r in results:
        assert r.ok, f"{r.source} failed to compile for {r.arch} ({r.route}):\n{r.log}"
        assert "warning" not in r.log.lower(), f"{r.source} ({r.arch}) compiles with warnings:\n{r.log}"


def test_the_report_covers_every_catalogued_kernel(results):
    for r in results:
        assert [k.kernel for k in r.kernels] == list(sources.KERNELS_BY_SOURCE[r.source]), r.source


def test_no_kernel_spills_and_shared_memory_fits(results):
    for r in results:
        for k in r.kernels:
            where = f"{k.kernel} ({r.arch})"
            assert k.spill_stores == 0 and k.spill_loads == 0, f"{where} spills registers"
            assert k.stack_bytes == 0, f"{where} uses {k.stack_bytes} bytes of local memory"
            assert 0 < k.registers <= 255, f"{where}: {k.registers} registers"
            assert k.shared_bytes <= STATIC_SHARED_LIMIT, f"{where}: {k.shared_bytes} B of shared memory"


def test_kernels_with_block_barriers_report_them(results):
    # The tiled kernels synchronise their blocks; the element-wise ones must not need to.
    by_name = {(k.kernel, r.arch): k for r in results for k in r.kernels}
    for arch in compile_check.DEFAULT_ARCHS:
        assert by_name[("attention_forward_kernel<64>", arch)].barriers >= 1
        assert by_name[("layer_norm_forward_kernel", arch)].barriers >= 1
        assert by_name[("gelu_forward_erf_kernel", arch)].barriers == 0


def test_attention_ladder_versions_1_and_2_use_no_shared_memory_and_no_block_barrier(results):
    # What separates them from version 3 (attention_forward.cu): one warp per row, nothing shared.
    for r in results:
        if r.source in ("attention_v1.cu", "attention_v2.cu"):
            assert r.kernels, r.source
            for k in r.kernels:
                assert k.shared_bytes == 0 and k.barriers == 0, f"{k.kernel} ({r.arch})"


def test_main_prints_the_report_and_succeeds(results, monkeypatch, capsys):
    monkeypatch.setattr(compile_check, "check_all", lambda archs, route: results)
    assert compile_check.main([]) == 0
    out = capsys.readouterr().out
    assert "attention_backward_dq_kernel<128>" in out and "spill st/ld" in out


def test_a_compile_error_is_reported_not_raised(monkeypatch):
    monkeypatch.setattr(compile_check, "load_source",
                        lambda name: "__global__ void broken(float* x) { x[0] = undefined_name; }\n")
    route = ROUTES[0]
    compile_one = compile_check.compile_nvrtc if route == "nvrtc" else compile_check.compile_nvcc
    result = compile_one("gelu.cu", "sm_90")
    assert not result.ok and "undefined_name" in result.log


@pytest.mark.skipif(compile_check.nvcc_path() is None, reason="nvcc is not installed")
def test_nvcc_fallback_route_agrees():
    for source in ("gelu.cu", "cross_entropy.cu"):
        result = compile_check.compile_nvcc(source, "sm_90")
        assert result.ok, result.log
        assert [k.kernel for k in result.kernels] == list(sources.KERNELS_BY_SOURCE[source])
        assert result.spills == 0


def test_ptxas_log_parser():
    log = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z1kILi64EEvPf' for 'sm_90'
ptxas info    : Function properties for _Z1kILi64EEvPf
ptxas         .     8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 1024 bytes smem
ptxas info    : Compiling entry function 'g' for 'sm_90'
ptxas info    : Function properties for g
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 0 barriers
"""
    kernels = compile_check.parse_ptxas_log(log, {"_Z1kILi64EEvPf": "k<64>", "g": "g"})
    assert [(k.kernel, k.registers, k.shared_bytes, k.stack_bytes, k.spill_stores,
             k.spill_loads, k.barriers) for k in kernels] == [
        ("k<64>", 40, 1024, 8, 4, 12, 1), ("g", 10, 0, 0, 0, 0, 0)]
