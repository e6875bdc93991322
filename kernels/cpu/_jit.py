"""How every kernel in this package is compiled: `numba.njit` with an on-disk cache that survives read-only installs.

Compilation happens on the first call of each kernel (never at import); `cache=True` stores the
machine code so later processes load it in tens of milliseconds instead of compiling again (about
1 s per element-wise kernel and 5-15 s for each of the two tiled attention kernels on a 2-core machine).

Numba looks for a cache folder in this order: $NUMBA_CACHE_DIR, `__pycache__` next to the source,
the user-wide `~/.cache/numba` (or $XDG_CACHE_HOME/numba).  On a read-only install run by a user
without a writable home none of these works, and `njit(cache=True)` raises
"RuntimeError: cannot cache function ...: no locator available" at decoration time, i.e. at import.
`kernel()` catches exactly that and retries with a private per-user folder in the temp directory
(created 0700 and checked to be owned by us, because cache files are pickles and loading someone
else's would run their code); if even that is impossible it compiles without a cache and warns once.
The private folder is given to Numba only while our own functions are being decorated, so other
Numba users in the same process keep their usual cache locations.

Threads: Numba's default "omp" threading layer uses GNU libgomp, whose idle threads spin-wait.
When anything else wants the cores (NumPy's BLAS threads between two kernels, another process)
the spinning threads steal the time slices the working threads need: a LayerNorm call measured
8-12 ms instead of 1.2 ms on a loaded 2-core machine.  Unless the user has chosen otherwise, we
therefore set OMP_WAIT_POLICY=PASSIVE (idle threads sleep) before Numba starts its thread pool.
It has no effect if an OpenMP runtime was already started by something else in the process.
"""
import os
import tempfile
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402  (after the OpenMP setting above)

# Flag sets for `fastmath=`.  We never pass `nnan` / `ninf`: the kernels use -inf for masked
# attention scores and must keep NaN/inf inputs meaningful.
# REDUCE allows reassociation, which LLVM needs to vectorise sums and maxima over a loop.
REDUCE = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
# ELEMENTWISE forbids reassociation, so carefully ordered arithmetic (range reductions) stays as written.
ELEMENTWISE = frozenset({"nsz", "arcp", "contract", "afn"})

_warned_no_cache = False


def private_cache_dir():
    """A writable folder only we own, for Numba's cache: <tmp>/minilm-numba-<uid>; None if impossible."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    name = "minilm-numba-%s" % (uid if uid is not None else os.environ.get("USERNAME", "user"))
    path = os.path.join(tempfile.gettempdir(), name)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.stat(path)
        if uid is not None and (info.st_uid != uid or info.st_mode & 0o022):
            return None  # someone else's (or group/world-writable) folder: never load pickles from it
        tempfile.TemporaryFile(dir=path).close()  # really writable?
    except OSError:
        return None
    return path


def _njit_cached(py_func, options, cache_dir=None):
    """numba.njit(cache=True) on py_func, with numba.config.CACHE_DIR set to cache_dir while decorating."""
    if cache_dir is None:
        return numba.njit(cache=True, **options)(py_func)
    saved = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = cache_dir  # read once, when the cache locator is chosen (now)
    try:
        return numba.njit(cache=True, **options)(py_func)
    finally:
        numba.config.CACHE_DIR = saved


def kernel(parallel=False, fastmath=REDUCE):
    """Decorator: compile `py_func` lazily with Numba, cached on disk wherever that is possible.

    error_model="numpy" makes x/0 give inf/nan instead of raising, which removes a branch per
    division and lets LLVM vectorise loops that divide.
    """
    options = dict(parallel=parallel, fastmath=set(fastmath), error_model="numpy", nogil=True)

    def decorate(py_func):
        global _warned_no_cache
        try:
            return _njit_cached(py_func, options)
        except RuntimeError as err:
            if "no locator available" not in str(err):
                raise
            reason = str(err)
        cache_dir = private_cache_dir()
        if cache_dir is not None:
            try:
                return _njit_cached(py_func, options, cache_dir)
            except RuntimeError as err:
                if "no locator available" not in str(err):
                    raise
        if not _warned_no_cache:
            _warned_no_cache = True
            warnings.warn(
                "minilm.kernels.cpu: no writable folder for Numba's compile cache (%s; the package folder, "
                "the home cache, NUMBA_CACHE_DIR and the temp dir were tried), so kernels are compiled anew "
                "in every process. Set NUMBA_CACHE_DIR to a writable folder to avoid that." % reason,
                RuntimeWarning,
                stacklevel=3,
            )
        return numba.njit(cache=False, **options)(py_func)

    return decorate


def helper(fastmath=ELEMENTWISE):
    """Decorator for small scalar functions called from kernels (exp2, erfc...): compiled into each caller.

    They are not cached on their own (the callers' caches hold them) and keep their own fastmath
    flags even after LLVM inlines them, so a reassociating caller cannot reorder their arithmetic.
    """
    return numba.njit(fastmath=set(fastmath), error_model="numpy", nogil=True)
