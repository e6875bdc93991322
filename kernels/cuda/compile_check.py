"""Compile every `.cu` file of this package without a GPU and report each kernel's resources.

    python -m minilm.kernels.cuda.compile_check [--arch sm_80 sm_90] [--route nvrtc|nvcc]

For every source and every target architecture the whole file is compiled to a cubin, with
every kernel of sources.KERNELS_BY_SOURCE instantiated, and ptxas's verbose report is read:
registers per thread, static shared memory per block, stack frame, spill stores/loads and
barriers, per kernel. The exit status is 1 if a file fails to compile or a kernel spills.

Two routes, neither needs a GPU:
  nvrtc  NVIDIA's runtime compiler through CuPy's low-level bindings (cupy.cuda.nvrtc), the
         same compiler `cupy.RawModule` uses on a GPU, with `-Xptxas=-v`. (CuPy's high-level
         compile calls query the device first and fail on a machine without one.)
         Needs: pip install cupy-cuda13x "cuda-toolkit[nvrtc]==13.*"
  nvcc   the CUDA toolkit's `nvcc -cubin -Xptxas -v`, templates instantiated by taking their
         addresses in a generated wrapper file.
By default the first route available is used.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from .sources import KERNELS_BY_SOURCE, cu_files, load_source

DEFAULT_ARCHS = ("sm_80", "sm_90")
COMPILE_FLAGS = ("-std=c++17",)


@dataclass
class KernelResources:
    kernel: str        # the name expression, e.g. "attention_forward_kernel<64>"
    registers: int
    shared_bytes: int  # static shared memory per block
    stack_bytes: int   # per-thread stack frame (local memory), 0 when all fits in registers
    spill_stores: int
    spill_loads: int
    barriers: int


@dataclass
class CompileResult:
    source: str
    arch: str
    route: str
    ok: bool
    log: str
    kernels: list = field(default_factory=list)

    @property
    def spills(self):
        return sum(k.spill_stores + k.spill_loads for k in self.kernels)


# ---------------------------------------------------------------- routes

def nvrtc_available():
    """True when cupy.cuda.nvrtc imports and finds the NVRTC library. Never raises."""
    try:
        from cupy.cuda import nvrtc
        nvrtc.getVersion()
        return True
    except Exception:
        return False


def nvcc_path():
    """Path of nvcc (PATH, then $CUDA_HOME/bin, then /usr/local/cuda/bin), or None."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    return None


def available_routes():
    routes = []
    if nvrtc_available():
        routes.append("nvrtc")
    if nvcc_path():
        routes.append("nvcc")
    return routes


def compile_nvrtc(source, arch):
    """Compile one `.cu` file with NVRTC for `arch` (e.g. "sm_90") and read ptxas's report."""
    from cupy.cuda import nvrtc
    names = KERNELS_BY_SOURCE[source]
    program = nvrtc.createProgram(load_source(source), source, [], [])
    try:
        for name in names:
            nvrtc.addNameExpression(program, name)
        options = [f"-arch={arch}", "-Xptxas=-v", *COMPILE_FLAGS]
        try:
            nvrtc.compileProgram(program, options)
            ok = True
        except nvrtc.NVRTCError:
            ok = False
        log = nvrtc.getProgramLog(program)
        if not ok:
            return CompileResult(source, arch, "nvrtc", False, log)
        by_mangled = {nvrtc.getLoweredName(program, name): name for name in names}
        nvrtc.getCUBIN(program)  # a cubin really was produced for this architecture
    finally:
        nvrtc.destroyProgram(program)
    return CompileResult(source, arch, "nvrtc", True, log, parse_ptxas_log(log, by_mangled))


def compile_nvcc(source, arch):
    """Compile one `.cu` file with `nvcc -cubin` for `arch` and read ptxas's report."""
    nvcc = nvcc_path()
    if nvcc is None:
        raise RuntimeError("compile_check: nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)")
    names = KERNELS_BY_SOURCE[source]
    # Taking a kernel's address in host code makes nvcc instantiate (and compile) it.
    wrapper = load_source(source) + "\nvoid* minilm_compile_check_kernels[] = {\n" + \
        "".join(f"    (void*)&{name},\n" for name in names) + "};\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, source)
        with open(path, "w", encoding="utf-8") as f:
            f.write(wrapper)
        cmd = [nvcc, "-cubin", f"-arch={arch}", *COMPILE_FLAGS, "-Xptxas", "-v",
               "-o", os.path.join(tmp, "out.cubin"), path]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        return CompileResult(source, arch, "nvcc", False, log)
    by_mangled = {_mangle_guess(name): name for name in names}
    return CompileResult(source, arch, "nvcc", True, log, parse_ptxas_log(log, by_mangled))


def _mangle_guess(name):
    """The Itanium prefix of our kernels' symbols: `k` (extern "C") or `_Z<len>kILi<N>EE`."""
    match = re.fullmatch(r"(\w+)<(\d+)>", name)
    if not match:
        return name
    base, n = match.groups()
    return f"_Z{len(base)}{base}ILi{n}EE"


# ---------------------------------------------------------------- ptxas report

_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")


def _field(pattern, text):
    match = re.search(pattern, text)
    return int(match.group(1)) if match else 0


def parse_ptxas_log(log, by_mangled):
    """Per-kernel resources from a `ptxas -v` log; `by_mangled` maps symbols to our names."""
    kernels = []
    pieces = _ENTRY.split(log)  # [before, name, arch, body, name, arch, body, ...]
    for i in range(1, len(pieces) - 2, 3):
        symbol, body = pieces[i], pieces[i + 2]
        name = by_mangled.get(symbol)
        if name is None:  # nvcc route: the symbol goes on with the parameter types
            name = next((n for m, n in by_mangled.items() if symbol.startswith(m)), symbol)
        kernels.append(KernelResources(
            kernel=name,
            registers=_field(r"Used (\d+) registers", body),
            shared_bytes=_field(r"(\d+) bytes smem", body),
            stack_bytes=_field(r"(\d+) bytes stack frame", body),
            spill_stores=_field(r"(\d+) bytes spill stores", body),
            spill_loads=_field(r"(\d+) bytes spill loads", body),
            barriers=_field(r"used (\d+) barriers", body),
        ))
    order = {name: n for n, name in enumerate(by_mangled.values())}
    kernels.sort(key=lambda k: order.get(k.kernel, len(order)))
    return kernels


# ---------------------------------------------------------------- driver

def check_all(archs=DEFAULT_ARCHS, route=None, sources=None):
    """Compile `sources` (default: every `.cu` file) for every arch; a list of CompileResult."""
    routes = available_routes()
    if route is None:
        if not routes:
            raise RuntimeError("compile_check: neither NVRTC (pip install cupy-cuda13x "
                               "\"cuda-toolkit[nvrtc]==13.*\") nor nvcc is available")
        route = routes[0]
    compile_one = {"nvrtc": compile_nvrtc, "nvcc": compile_nvcc}[route]
    sources = sources or cu_files()
    missing = [s for s in sources if s not in KERNELS_BY_SOURCE]
    if missing:
        raise ValueError(f"compile_check: {missing} have no entry in sources.KERNELS_BY_SOURCE")
    return [compile_one(source, arch) for source in sources for arch in archs]


def format_report(results):
    header = (f"{'source':<22} {'kernel':<42} {'arch':<6} {'regs':>4} {'smem B':>7} "
              f"{'stack B':>7} {'spill st/ld':>11} {'bars':>4}")
    lines = [header, "-" * len(header)]
    for r in results:
        if not r.ok:
            lines.append(f"{r.source:<22} {'COMPILE FAILED (' + r.route + ')':<42} {r.arch:<6}")
            lines.extend("    " + line for line in r.log.strip().splitlines())
            continue
        for k in r.kernels:
            lines.append(f"{r.source:<22} {k.kernel:<42} {r.arch:<6} {k.registers:>4} "
                         f"{k.shared_bytes:>7} {k.stack_bytes:>7} "
                         f"{str(k.spill_stores) + '/' + str(k.spill_loads):>11} {k.barriers:>4}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=list(DEFAULT_ARCHS))
    parser.add_argument("--route", choices=("nvrtc", "nvcc"), default=None)
    args = parser.parse_args(argv)
    results = check_all(args.arch, args.route)
    print(f"route: {results[0].route if results else '-'}")
    print(format_report(results))
    failed = [f"{r.source} ({r.arch})" for r in results if not r.ok]
    spilled = [f"{r.source} ({r.arch})" for r in results if r.ok and r.spills]
    if failed or spilled:
        print(f"FAILED to compile: {failed}; spills in: {spilled}", file=sys.stderr)
        return 1
    print(f"ok: {len(results)} compilations, {sum(len(r.kernels) for r in results)} kernels, "
          f"no spills")
    return 0


if __name__ == "__main__":
    sys.exit(main())
