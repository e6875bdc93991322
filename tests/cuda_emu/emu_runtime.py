"""Run the CUDA C kernels of kernels/cuda/ on the CPU: build the emulator library, launch by name.

`build_library()` compiles, with g++, one generated C++ file that includes cuda_emu.h (the
CUDA stand-ins), the `.cu` sources unchanged, and emu_registry.h (name -> kernel table and
the C entry points), into a shared library cached under the temp directory by a hash of
every input. `EmuRuntime(path)` implements the runtime interface of
minilm.kernels.cuda.runtime on NumPy arrays, so the same op wrappers that launch through
CuPy on a GPU launch here through ctypes.

Every array the runtime hands to a kernel lives inside a larger buffer with guard bytes on
both sides. Outputs from `empty` are filled with 0xFF bytes (float32 NaN), so an element a
kernel forgets to write stays NaN. Inputs (`contiguous`) are copied between 0xFF guards, so a
read past either end reads NaN. Outputs sit between 0xFE guards, so any write past either end
-- even of a NaN -- changes a guard byte; every launch checks all guards and fails if one
changed.
"""
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import weakref

import numpy as np

from minilm.kernels.cuda import runtime as cuda_runtime
from minilm.kernels.cuda import sources as cuda_sources

EMU_DIR = os.path.dirname(os.path.abspath(__file__))
# -fvisibility=hidden and -fno-gnu-unique keep every symbol private to its library: two
# emulator libraries loaded in one process (the real kernels and a deliberately broken copy)
# must not share one kernel table or one template's __shared__ arrays, which the dynamic
# linker would otherwise merge process-wide. Only the extern "C" entry points are exported.
CXX_FLAGS = ("-std=c++17", "-O2", "-fPIC", "-shared", "-fdata-sections", "-fvisibility=hidden",
             "-fno-gnu-unique", "-Wall", "-Wno-unknown-pragmas", "-Wno-unused-function",
             "-Wno-unused-variable")
GUARD_BYTES = 256
POISON = 0xFF        # float32 0xFFFFFFFF is a NaN: unwritten outputs and reads past an input
OUTPUT_GUARD = 0xFE  # around outputs: a NaN written past the end (whose bits may well be
                     # 0xFFFFFFFF, e.g. computed from a NaN read past an input) still shows


def find_compiler():
    """A C++17 compiler: $CXX, g++ or c++ on PATH; None if there is none."""
    for candidate in (os.environ.get("CXX"), "g++", "c++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def generated_unit(source_files, kernel_names):
    lines = ['#include "cuda_emu.h"']
    lines += [f'#include "{name}"' for name in source_files]
    lines.append('#include "emu_registry.h"')
    lines += [f"EMU_KERNEL({name})" for name in kernel_names]
    return "\n".join(lines) + "\n"


def _digest(parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def build_library(source_files=None, override_dir=None, build_root=None):
    """Compile the emulator library for `source_files` (default: every catalogued `.cu`).

    override_dir: a folder searched before kernels/cuda/ -- a modified copy of a `.cu` file
    placed there replaces the original (the race test uses this).
    Returns the path of the shared library (reused when nothing changed).
    """
    cxx = find_compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found ($CXX, g++, c++)")
    source_files = list(source_files or cuda_sources.KERNELS_BY_SOURCE)
    names = [n for f in source_files for n in cuda_sources.KERNELS_BY_SOURCE[f]]
    unit = generated_unit(source_files, names)
    include_dirs = ([override_dir] if override_dir else []) + [cuda_sources.SOURCE_DIR, EMU_DIR]

    inputs = [unit, cxx, " ".join(CXX_FLAGS)]
    for folder in include_dirs:
        for name in sorted(os.listdir(folder)):
            if name.endswith((".cu", ".cuh", ".h", ".ld")):
                with open(os.path.join(folder, name), "rb") as f:
                    inputs += [name, f.read()]
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    build_dir = os.path.join(build_root or os.path.join(tempfile.gettempdir(), "minilm_cuda_emu"),
                             _digest(inputs + [version]))
    library = os.path.join(build_dir, "libminilm_cuda_emu.so")
    if os.path.isfile(library):
        return library

    os.makedirs(build_dir, exist_ok=True)
    unit_path = os.path.join(build_dir, "emulated_kernels.cpp")
    with open(unit_path, "w", encoding="utf-8") as f:
        f.write(unit)
    partial = f"{library}.{os.getpid()}.tmp"
    cmd = [cxx, *CXX_FLAGS, *(f"-I{d}" for d in include_dirs), unit_path,
           f"-Wl,-T,{os.path.join(EMU_DIR, 'emu_shared.ld')}", "-o", partial]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building the CUDA emulator failed:\n{' '.join(cmd)}\n{proc.stderr}")
    check_shared_region(partial, names)
    os.replace(partial, library)  # atomic: a concurrent build never sees a half-written file
    return library


def check_shared_region(library, kernel_names):
    """Everything that emu_shared.ld gathered must be a __shared__ variable of a kernel.

    The linker script takes every zero-initialised function-local static; if one belonged to
    anything else (library code), poisoning it before each block would corrupt it.
    """
    objdump = shutil.which("objdump")
    if objdump is None:
        return  # binutils ships with g++; without it the check cannot run
    table = subprocess.run([objdump, "-t", "-C", library], capture_output=True, text=True).stdout
    bases = {re.sub(r"<.*", "", n) for n in kernel_names}
    row = re.compile(r"\s\.emu_shared\s+[0-9a-fA-F]+\s+(.+)$")
    for line in table.splitlines():
        match = row.search(line)
        if match is None:
            continue
        symbol = match.group(1).strip()
        if symbol in ("emu_shared_begin", "emu_shared_end"):
            continue
        owner = re.match(r"[A-Za-z_]\w*", symbol)
        if owner is None or owner.group(0) not in bases or "::" not in symbol:
            raise RuntimeError(f"the emulator's shared-memory region holds {symbol!r}, which is "
                               f"not a kernel's __shared__ variable; refusing to poison it")


class EmuRuntime:
    """The runtime interface of minilm.kernels.cuda.runtime, on the CPU emulator."""

    name = "cpu-emulator"
    xp = np

    def __init__(self, library):
        self.library = library
        lib = ctypes.CDLL(library)
        lib.emu_launch.argtypes = [ctypes.c_char_p, ctypes.c_char_p] + [ctypes.c_uint] * 6 + \
            [ctypes.POINTER(ctypes.c_void_p)]
        lib.emu_launch.restype = ctypes.c_int
        lib.emu_last_error.restype = ctypes.c_char_p
        lib.emu_kernel_count.restype = ctypes.c_int
        lib.emu_kernel_name.argtypes = [ctypes.c_int]
        lib.emu_kernel_name.restype = ctypes.c_char_p
        self._lib = lib
        self._guarded = []  # (weak reference, guard byte) of every guarded buffer handed out
        self.launches = []  # (kernel, grid, block) of every launch, for tests to inspect

    def kernel_names(self):
        return [self._lib.emu_kernel_name(i).decode() for i in range(self._lib.emu_kernel_count())]

    # ---- arrays
    def is_array(self, x):
        return isinstance(x, np.ndarray)

    def _guarded_array(self, shape, dtype, guard):
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        raw = np.full(nbytes + 2 * GUARD_BYTES, guard, dtype=np.uint8)
        raw[GUARD_BYTES:GUARD_BYTES + nbytes] = POISON
        self._guarded.append((weakref.ref(raw), guard))
        return raw[GUARD_BYTES:GUARD_BYTES + nbytes].view(dtype).reshape(shape)

    def empty(self, shape, dtype=np.float32):
        return self._guarded_array(shape, dtype, OUTPUT_GUARD)  # payload 0xFF: NaN for float32

    def contiguous(self, x):
        out = self._guarded_array(x.shape, x.dtype, POISON)
        out[...] = x
        return out

    def check_guards(self, kernel):
        alive = []
        for ref, guard in self._guarded:
            raw = ref()
            if raw is None:
                continue
            alive.append((ref, guard))
            if (raw[:GUARD_BYTES] != guard).any() or (raw[len(raw) - GUARD_BYTES:] != guard).any():
                raise AssertionError(f"{kernel}: wrote outside the bounds of an array "
                                     f"(a guard byte around a buffer of {len(raw) - 2 * GUARD_BYTES}"
                                     f" bytes changed)")
        self._guarded = alive

    # ---- launches
    _ARRAY_CODES = {np.dtype(np.float32): "F", np.dtype(np.uint8): "B",
                    np.dtype(np.int32): "I", np.dtype(np.int64): "Q"}
    _SCALARS = {np.int32: ("i", ctypes.c_int32), np.int64: ("q", ctypes.c_int64),
                np.float32: ("f", ctypes.c_float)}

    def launch(self, source, kernel, grid, block, args):
        cuda_runtime.check_launch(self, source, kernel, grid, block, args)
        self.launches.append((kernel, tuple(grid), tuple(block)))
        if 0 in grid:
            return
        codes, holders = [], []
        for arg in args:
            if isinstance(arg, np.ndarray):
                if not arg.flags.c_contiguous:
                    raise ValueError(f"{kernel}: array arguments must be C-contiguous")
                if arg.dtype not in self._ARRAY_CODES:
                    raise TypeError(f"{kernel}: no kernel parameter type for a {arg.dtype} array")
                codes.append(self._ARRAY_CODES[arg.dtype])
                holders.append(ctypes.c_void_p(arg.ctypes.data))
            else:
                code, ctype = self._SCALARS[type(arg)]
                codes.append(code)
                holders.append(ctype(arg.item()))
        argv = (ctypes.c_void_p * max(1, len(holders)))(
            *[ctypes.cast(ctypes.pointer(h), ctypes.c_void_p) for h in holders])
        rc = self._lib.emu_launch(kernel.encode(), "".join(codes).encode(),
                                  *[int(g) for g in grid], *[int(b) for b in block], argv)
        if rc != 0:
            raise RuntimeError(f"emulated launch failed: {self._lib.emu_last_error().decode()}")
        self.check_guards(kernel)
