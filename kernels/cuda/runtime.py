"""Where the CUDA kernels run, and the checks every launch goes through.

The op wrappers (`attention.py`, `gelu.py`, ...) never talk to CuPy directly. They talk to a
*runtime*, an object with

    xp                         the array module (cupy on a GPU)
    is_array(x)                is x an array of that module?
    contiguous(x)              x as a C-contiguous array (a copy only if needed)
    empty(shape, dtype)        a fresh output array
    launch(source, kernel, grid, block, args)
                               run `kernel` (a name from sources.KERNELS_BY_SOURCE) of the
                               .cu file `source` on a grid of blocks

`CupyRuntime` below is the real one: it compiles each `.cu` file once with NVRTC through
`cupy.RawModule` and launches on the current GPU. The test suite has a second one that runs
the same `.cu` sources on the CPU (tests/cuda_emu/), so the wrappers -- shape checks, output
allocation, grid sizes, argument order and types -- are tested without a GPU.

Kernel arguments are arrays of the runtime or NumPy scalars of the exact C type of the
parameter: numpy.int32 for `int`, numpy.int64 for `long long`, numpy.float32 for `float`
(a Python int or float would be passed as 64 bits by CuPy and silently misread).

CuPy is imported only inside functions: importing this module works without it.
"""
import numpy as np

from .sources import KERNELS_BY_SOURCE, load_source

COMPILE_OPTIONS = ("-std=c++17",)

SCALAR_TYPES = (np.int32, np.int64, np.float32)

_INT32_MAX = 2**31 - 1
MAX_GRID_Y = 65535  # CUDA's limit on gridDim.y (gridDim.x may go to 2^31 - 1)


def is_available():
    """True when CuPy imports and at least one CUDA device is present. Never raises."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def check_launch(runtime, source, kernel, grid, block, args):
    """Validate a launch before it reaches a driver that would misread it silently."""
    if kernel not in KERNELS_BY_SOURCE.get(source, ()):
        raise ValueError(f"minilm.kernels.cuda: kernel {kernel!r} is not listed for {source!r} "
                         f"in sources.KERNELS_BY_SOURCE")
    if len(grid) != 3 or len(block) != 3:
        raise ValueError(f"{kernel}: grid and block must be 3-tuples, got {grid} and {block}")
    if any(int(g) < 0 for g in grid) or grid[0] > _INT32_MAX or grid[1] > MAX_GRID_Y \
            or grid[2] > MAX_GRID_Y:
        raise ValueError(f"{kernel}: grid {grid} exceeds CUDA's limits (x < 2^31, y and z <= 65535)")
    threads = block[0] * block[1] * block[2]
    if not 1 <= threads <= 1024:
        raise ValueError(f"{kernel}: block {block} has {threads} threads, not 1..1024")
    for position, arg in enumerate(args):
        if not (runtime.is_array(arg) or type(arg) in SCALAR_TYPES):
            raise TypeError(f"{kernel}: argument {position} is {type(arg).__name__}; pass an "
                            f"array of {runtime.xp.__name__} or numpy.int32/int64/float32")


class CupyRuntime:
    """Launch the kernels with CuPy on the current GPU.

    poison: fill every output from `empty` with NaN first (slower; used by the GPU parity
    tests so that an element a kernel forgets to write cannot pass by luck).
    """

    name = "cupy"

    def __init__(self, poison=False):
        import cupy
        self.xp = cupy
        self.poison = poison
        self._modules = {}

    def module(self, source):
        """The compiled `cupy.RawModule` of one `.cu` file (compiled on first use)."""
        module = self._modules.get(source)
        if module is None:
            module = self.xp.RawModule(code=load_source(source), options=COMPILE_OPTIONS,
                                       name_expressions=list(KERNELS_BY_SOURCE[source]))
            self._modules[source] = module
        return module

    def is_array(self, x):
        return isinstance(x, self.xp.ndarray)

    def contiguous(self, x):
        return self.xp.ascontiguousarray(x)

    def empty(self, shape, dtype=np.float32):
        out = self.xp.empty(shape, dtype=dtype)
        if self.poison and out.dtype.kind == "f":
            out.fill(np.nan)
        return out

    def launch(self, source, kernel, grid, block, args):
        check_launch(self, source, kernel, grid, block, args)
        if 0 in grid:
            return  # nothing to do (an empty tensor); CUDA rejects a grid with a 0 dimension
        self.module(source).get_function(kernel)(tuple(grid), tuple(block), tuple(args))


_default = {}


def get_runtime():
    """The process-wide CuPy runtime (created on first use)."""
    runtime = _default.get("cupy")
    if runtime is None:
        try:
            runtime = CupyRuntime()
        except ImportError as err:
            raise ImportError("minilm.kernels.cuda needs CuPy: pip install cupy-cuda13x "
                              "(or the wheel that matches your CUDA)") from err
        _default["cupy"] = runtime
    return runtime


# ---------------------------------------------------------------- input checks

def float32_input(runtime, x, op, name):
    """x as a contiguous float32 array of the runtime; TypeError otherwise."""
    if not runtime.is_array(x):
        raise TypeError(f"{op}: {name} must be a {runtime.xp.__name__} array, "
                        f"got {type(x).__module__}.{type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{op}: {name} must be float32 (the CUDA kernels are float32), "
                        f"got {x.dtype} with shape {tuple(x.shape)}")
    return runtime.contiguous(x)


def integer_input(runtime, x, op, name, dtype=np.int64):
    """x as a contiguous array of integer dtype `dtype`; TypeError for a non-integer array."""
    if not runtime.is_array(x):
        raise TypeError(f"{op}: {name} must be a {runtime.xp.__name__} array, "
                        f"got {type(x).__module__}.{type(x).__name__}")
    if x.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name} must be an integer array, got {x.dtype}")
    return runtime.contiguous(x if x.dtype == dtype else x.astype(dtype))


def mask_input(runtime, x, op, name):
    """A boolean (or 0/1 integer) mask as contiguous uint8 bytes: 1 where x is true."""
    if not runtime.is_array(x):
        raise TypeError(f"{op}: {name} must be a {runtime.xp.__name__} array, "
                        f"got {type(x).__module__}.{type(x).__name__}")
    if x.dtype.kind not in "biu":
        raise TypeError(f"{op}: {name} must be a boolean array, got {x.dtype}")
    return runtime.contiguous((x != 0).astype(np.uint8))


def int32(value, op, what):
    """A size as numpy.int32 for an `int` kernel parameter; ValueError if it does not fit."""
    value = int(value)
    if not 0 <= value <= _INT32_MAX:
        raise ValueError(f"{op}: {what} = {value} does not fit the kernel's 32-bit int")
    return np.int32(value)


def ceil_div(a, b):
    return -(-a // b)
