"""The CUDA C sources of this package: which `.cu` files exist and which kernels each defines.

Every kernel is named by the expression a compiler needs to find it: a plain name for an
`extern "C"` kernel, `name<32>` for an instance of a template. The same strings serve as
NVRTC name expressions (CuPy's `RawModule(name_expressions=...)`), in the compile check and
in the CPU emulator of the tests, so a kernel is spelled the same way everywhere.

`load_source(file)` returns the text to compile: the `.cu` file with its `#include "x.cuh"`
lines replaced by the headers themselves (each at most once), with `#line` markers so that
compiler messages point into the right file. One self-contained string also makes CuPy's
compile cache key change whenever any header changes.
"""
import os
import re

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))

# Head dimensions are rounded up to one of these for the attention kernels (see
# attention_forward.cu): D in 1..32 -> 32, 33..64 -> 64, 65..128 -> 128.
ATTENTION_HEAD_DIMS = (32, 64, 128)

KERNELS_BY_SOURCE = {
    "gelu.cu": (
        "gelu_forward_erf_kernel",
        "gelu_forward_tanh_kernel",
        "gelu_backward_erf_kernel",
        "gelu_backward_tanh_kernel",
    ),
    "layer_norm.cu": (
        "layer_norm_forward_kernel",
        "layer_norm_backward_dx_kernel",
        "layer_norm_backward_params_partial_kernel",
        "layer_norm_backward_params_reduce_kernel",
    ),
    "cross_entropy.cu": (
        "cross_entropy_forward_kernel",
        "cross_entropy_backward_kernel",
    ),
    # The attention ladder (attention_ladder.py): versions 1 and 2; version 3 is the two files below.
    "attention_v1.cu": (
        "attention_v1_forward_kernel",
        "attention_v1_backward_rows_kernel",
        "attention_v1_backward_cols_kernel",
    ),
    "attention_v2.cu": (
        "attention_v2_forward_kernel",
        "attention_v2_backward_dq_kernel",
        "attention_v2_backward_dkdv_kernel",
    ),
    "attention_forward.cu": tuple(f"attention_forward_kernel<{d}>" for d in ATTENTION_HEAD_DIMS),
    "attention_backward.cu": ("attention_backward_delta_kernel",)
    + tuple(f"attention_backward_dkdv_kernel<{d}>" for d in ATTENTION_HEAD_DIMS)
    + tuple(f"attention_backward_dq_kernel<{d}>" for d in ATTENTION_HEAD_DIMS),
}

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')


def source_path(filename):
    """Absolute path of a `.cu`/`.cuh` file of this package; ValueError if there is none."""
    path = os.path.join(SOURCE_DIR, filename)
    if os.path.basename(filename) != filename or not os.path.isfile(path):
        raise ValueError(f"minilm.kernels.cuda: no CUDA source {filename!r} in {SOURCE_DIR}")
    return path


def load_source(filename, source_dir=None):
    """The text of `filename` with its local `#include "..."` lines inlined (each header once).

    source_dir: where to look for the files (default: this package's folder).
    """
    source_dir = source_dir or SOURCE_DIR
    seen = set()

    def expand(name):
        path = os.path.join(source_dir, name)
        if not os.path.isfile(path):
            raise ValueError(f"minilm.kernels.cuda: {name!r} not found in {source_dir}")
        seen.add(name)
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        out = [f'#line 1 "{name}"']
        for number, line in enumerate(lines, start=1):
            match = _INCLUDE.match(line)
            if match and os.path.isfile(os.path.join(source_dir, match.group(1))):
                header = match.group(1)
                if header not in seen:
                    out.extend(expand(header))
                out.append(f'#line {number + 1} "{name}"')
            else:
                out.append(line)
        return out

    return "\n".join(expand(filename)) + "\n"


def all_kernel_names():
    """Every kernel name expression, in catalog order."""
    return [name for names in KERNELS_BY_SOURCE.values() for name in names]


def cu_files():
    """The `.cu` files present in the package folder (sorted)."""
    return sorted(f for f in os.listdir(SOURCE_DIR) if f.endswith(".cu"))
