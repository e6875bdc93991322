"""Which array library and which fast kernels the engine uses.

Two separate questions live here:

1. *Array module.* Every op asks its inputs which library they belong to
   (`array_module(x)` returns `numpy` or `cupy`), so the same reference code
   runs on a CPU array or on a GPU array. CuPy is never imported here: an
   array can only be a CuPy array if the user already imported CuPy.

2. *Kernel backend.* A few hot ops (attention, GELU, LayerNorm,
   softmax + cross-entropy) have fast versions in `minilm.kernels`:
   "numpy" uses none of them (the readable reference), "numba" uses the
   Numba CPU kernels for NumPy arrays, "cuda" uses the CUDA kernels for
   CuPy arrays. Choose with `minilm.set_backend(name)` or the environment
   variable MINILM_BACKEND; by default minilm picks "numba" when Numba is
   importable and "numpy" otherwise. A backend that cannot load falls back
   to "numpy" with one warning, never a crash.
"""
import collections
import functools
import os
import sys
import warnings

import numpy as np

BACKENDS = ("numpy", "numba", "cuda")

_state = {"requested": None, "name": None, "kernels": None}
_calls = collections.Counter()      # kernel name -> calls since the last reset (see kernel_call_counts)


def array_module(*arrays):
    """Return `cupy` if any argument is a CuPy array, else `numpy`."""
    for a in arrays:
        if type(a) is not np.ndarray and type(a).__module__.startswith("cupy"):  # the common case: one check
            return sys.modules["cupy"]
    return np


def is_cupy(a):
    return type(a).__module__.startswith("cupy")


def _load_kernels(name):
    """Import the kernel table of one backend; raise ImportError if unavailable."""
    if name == "numpy":
        return {}
    if name == "numba":
        from minilm.kernels import cpu                  # optional (needs Numba): loaded only when chosen
        _one_numba_thread_unless_asked()
        return dict(cpu.KERNELS)
    if name == "cuda":
        from minilm.kernels import cuda                 # optional (needs CuPy): loaded only when chosen
        if not cuda.is_available():
            raise ImportError("CuPy with a CUDA device is not available")
        return dict(cuda.KERNELS)
    raise ValueError(f"set_backend: unknown backend {name!r}; choose one of {BACKENDS}")


def _one_numba_thread_unless_asked():
    """Run the Numba kernels on one thread unless NUMBA_NUM_THREADS says otherwise.

    A training step alternates BLAS matmuls (OpenBLAS uses every core and its
    threads keep spinning for a while after each call) with Numba kernels.
    Two thread pools on two cores then fight: on a 2-core machine with any
    other load a GPT step went from ~0.15 s to over 6 s. One Numba thread
    leaves the cores to BLAS between kernels; set NUMBA_NUM_THREADS to choose.
    """
    if "NUMBA_NUM_THREADS" not in os.environ:
        import numba                                    # present: the numba backend was just loaded
        from numba.np.ufunc import parallel
        if not parallel._is_initialized:
            # set_num_threads(1) alone only masks threads: the pool still starts one thread per
            # core, and an OpenMP pool's idle threads spin after each kernel, which made small
            # models (kernels and small BLAS calls alternating fast) 7x slower on 2 cores. A pool
            # of one thread, sized before it starts, has nobody left to spin.
            numba.config.NUMBA_NUM_THREADS = parallel.NUM_THREADS = 1
        numba.set_num_threads(1)


def _default_backend():
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numpy"
    return "numba"


def set_backend(name=None):
    """Select the kernel backend: "numpy", "numba", "cuda", or None for the default.

    Returns the name actually in use (it can differ when the requested one is
    unavailable; a warning then says why).
    """
    if name is not None and name not in BACKENDS:
        raise ValueError(f"set_backend: unknown backend {name!r}; choose one of {BACKENDS}")
    requested = name or os.environ.get("MINILM_BACKEND") or _default_backend()
    if requested not in BACKENDS:
        raise ValueError(f"MINILM_BACKEND={requested!r} is not one of {BACKENDS}")
    try:
        kernels = {name: _counted(name, fn) for name, fn in _load_kernels(requested).items()}
        chosen = requested
    except Exception as err:  # a broken optional install must never stop training
        warnings.warn(f"minilm: backend {requested!r} is unavailable ({err}); "
                      f"falling back to the NumPy reference ops", RuntimeWarning, stacklevel=2)
        kernels, chosen = {}, "numpy"
    _state.update(requested=requested, name=chosen, kernels=kernels)
    return chosen


def _counted(name, kernel):
    """Wrap a kernel so each call is counted: tests (and curious learners) can check that the
    fast path really ran instead of silently falling back to the reference op."""
    @functools.wraps(kernel)
    def counted_kernel(*args, **kwargs):
        _calls[name] += 1
        return kernel(*args, **kwargs)
    return counted_kernel


def kernel_call_counts():
    """{kernel name: number of calls} since the last reset_kernel_call_counts() (names never called are absent)."""
    return dict(_calls)


def reset_kernel_call_counts():
    _calls.clear()


def get_backend():
    """The name of the active kernel backend.

    The first call without a set_backend() before it chooses the default, and
    says so once on stderr: a learner should know when code other than the
    readable reference is running.
    """
    if _state["name"] is None:
        chosen = set_backend(None)
        if chosen != "numpy":
            print(f"minilm: using the {chosen!r} kernel backend "
                  f"(minilm.set_backend or MINILM_BACKEND to change)", file=sys.stderr)
    return _state["name"]


def get_kernel(name, *arrays):
    """The fast kernel `name` for these arrays, or None to use the reference op.

    Only `minilm.nn.functional` asks this question (through kernel_pair): it is
    the one place where reference and fused ops are chosen.

    A kernel is used only when the arrays live where the backend runs
    (NumPy arrays for "numba", CuPy arrays for "cuda") and are float32: the
    float64 path is kept for gradient checks against the exact reference.
    """
    if _state["name"] is None:
        get_backend()                                 # choose the default on first use
    kernels = _state["kernels"]
    if not kernels:                                   # the "numpy" backend has none
        return None
    on_gpu = _state["name"] == "cuda"
    for a in arrays:
        if getattr(a, "dtype", None) != np.float32 or is_cupy(a) != on_gpu:
            return None
    return kernels.get(name)


def kernel_pair(name, *arrays):
    """(name_forward, name_backward) kernels for these arrays, or None: see get_kernel."""
    forward = get_kernel(f"{name}_forward", *arrays)
    return None if forward is None else (forward, _state["kernels"][f"{name}_backward"])
