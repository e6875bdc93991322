"""What data-parallel training costs on N machines: the ring all-reduce model and scaling efficiency.

Ring all-reduce (Patarasuk & Yuan 2009, "Bandwidth optimal all-reduce algorithms for clusters of
workstations", JPDC 69(2); Thakur, Rabenseifner & Gropp 2005, "Optimization of collective
communication operations in MPICH", IJHPCA 19(1)): the buffer of B bytes is cut into N chunks;
N - 1 reduce-scatter steps then N - 1 all-gather steps each send one chunk of B / N bytes to the
next rank while receiving one from the previous. With alpha the fixed cost of one step (start-up
latency: software, NIC, switch) and beta = 1 / bandwidth the seconds per byte on one link,

    T_ring(N, B) = 2 (N - 1) alpha + 2 (N - 1) / N * B / bandwidth

N = 1 costs nothing; N = 2 sends B / 2 each way twice, B in all per rank; as N grows each rank
sends and receives 2 B (the bandwidth term tends to 2 B / bandwidth and stops growing, which is
why the ring is "bandwidth optimal"), while the latency term 2 (N - 1) alpha grows without bound.
The reduction arithmetic (gamma per byte in Thakur et al.) is left out: at network speeds it is
small next to the transfer, and on one machine it is folded into the fitted alpha and bandwidth.

A data-parallel step with per-rank batch fixed (weak scaling) computes for T_compute, then
all-reduces the float32 gradients (4 bytes per parameter). Gradients are sent in buckets (PyTorch
DDP's default is 25 MB; Li et al. 2020, "PyTorch Distributed", VLDB 13(12)), each a separate ring,
so each bucket pays its own 2 (N - 1) alpha. Buckets are launched during the backward pass, so
part of the communication can hide behind it; this model takes that as one number, `overlap`: the
fraction of T_compute during which communication runs for free (0: none, the worst case; the
backward pass is about 2/3 of a step's FLOPs, 4N of 6N per token, so 2/3 is the optimistic
ceiling). Then

    T_step(N) = T_compute + max(0, T_comm(N) - overlap * T_compute)
    efficiency(N) = T_compute / T_step(N)        (1 at N = 1, in (0, 1] always)

so the speed-up over one rank is N x efficiency(N).
"""
import math

import numpy as np

BYTES_PER_FLOAT32 = 4
DDP_BUCKET_BYTES = 25 * 2 ** 20     # PyTorch DDP's bucket_cap_mb=25 default


def _check_ranks(n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"number of ranks must be an int >= 1, got {n!r}")
    return int(n)


def _check_nonnegative(name, value):
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _check_positive(name, value):
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def ring_allreduce_time(n, nbytes, alpha, bandwidth):
    """Seconds for a ring all-reduce of `nbytes` over `n` ranks.

    alpha: seconds of latency per ring step (2 (n - 1) steps); bandwidth: bytes per second of
    one link. ring_allreduce_time(1, ...) == 0: one rank has nothing to exchange.
    """
    n = _check_ranks(n)
    nbytes = _check_nonnegative("nbytes", nbytes)
    alpha = _check_nonnegative("alpha", alpha)
    bandwidth = _check_positive("bandwidth", bandwidth)
    if n == 1:
        return 0.0
    return 2 * (n - 1) * alpha + 2 * (n - 1) / n * nbytes / bandwidth


def bucket_sizes(total_bytes, bucket_bytes=DDP_BUCKET_BYTES):
    """Split `total_bytes` into buckets of at most `bucket_bytes` (the last one smaller)."""
    total_bytes = int(_check_nonnegative("total_bytes", total_bytes))
    bucket_bytes = int(_check_positive("bucket_bytes", bucket_bytes))
    full, rest = divmod(total_bytes, bucket_bytes)
    return [bucket_bytes] * full + ([rest] if rest else [])


def bucketed_allreduce_time(n, total_bytes, alpha, bandwidth, bucket_bytes=DDP_BUCKET_BYTES):
    """Seconds to all-reduce `total_bytes` as one ring per bucket, one after another.

    The bandwidth term is the same as one big ring; the latency term is paid once per bucket.
    """
    return sum(ring_allreduce_time(n, b, alpha, bandwidth) for b in bucket_sizes(total_bytes, bucket_bytes))


def gradient_bytes(num_parameters, bytes_per_value=BYTES_PER_FLOAT32):
    """Bytes all-reduced per step: one gradient value per parameter (float32: 4 bytes)."""
    if isinstance(num_parameters, bool) or not isinstance(num_parameters, (int, np.integer)) or num_parameters < 0:
        raise ValueError(f"num_parameters must be an int >= 0, got {num_parameters!r}")
    return int(num_parameters) * int(_check_positive("bytes_per_value", bytes_per_value))


def step_time(t_compute, t_comm, overlap=0.0):
    """Seconds per data-parallel step: compute, plus the communication not hidden behind it.

    overlap: fraction of t_compute during which communication proceeds for free, in [0, 1].
    """
    t_compute = _check_positive("t_compute", t_compute)
    t_comm = _check_nonnegative("t_comm", t_comm)
    overlap = float(overlap)
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap must be in [0, 1], got {overlap!r}")
    return t_compute + max(0.0, t_comm - overlap * t_compute)


def scaling_efficiency(n, t_compute, nbytes, alpha, bandwidth, overlap=0.0, bucket_bytes=None):
    """Weak-scaling efficiency T_compute / T_step(n) of data parallelism over `n` ranks.

    nbytes: gradient bytes per step; bucket_bytes=None sends them as one ring, otherwise in
    buckets of that size (each paying its own latency).
    """
    if bucket_bytes is None:
        t_comm = ring_allreduce_time(n, nbytes, alpha, bandwidth)
    else:
        _check_ranks(n)
        t_comm = bucketed_allreduce_time(n, nbytes, alpha, bandwidth, bucket_bytes)
    return float(t_compute) / step_time(t_compute, t_comm, overlap)


def fit_alpha_bandwidth(nbytes, seconds, n=2, relative=True):
    """Fit the ring model's alpha (s per step) and bandwidth (bytes/s) to measured all-reduces.

    nbytes, seconds: measured (buffer size, all-reduce time) pairs over `n` ranks (n >= 2). The
    model is linear, seconds = 2 (n - 1) alpha + 2 (n - 1) / n * nbytes / bandwidth, so this is
    ordinary least squares on (intercept, slope). relative=True weights each point by
    1 / seconds, i.e. fits relative errors: the sizes span 4 orders of magnitude and unweighted
    least squares would let the largest buffers decide the intercept (alpha) alone.
    Returns (alpha, bandwidth). Raises ValueError when the fitted slope is not positive (no
    bandwidth can explain the data); a negative intercept is returned as it is, for the caller
    to report (it means latency is below what the data can resolve).
    """
    n = _check_ranks(n)
    if n < 2:
        raise ValueError("fit_alpha_bandwidth needs n >= 2: one rank does not communicate")
    x = np.asarray(nbytes, dtype=np.float64).ravel()
    y = np.asarray(seconds, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"nbytes and seconds differ in length: {x.size} vs {y.size}")
    if x.size < 2 or np.unique(x).size < 2:
        raise ValueError("fit_alpha_bandwidth needs at least two different buffer sizes")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or np.any(x < 0) or np.any(y <= 0):
        raise ValueError("nbytes must be finite and >= 0, seconds finite and > 0")
    weights = 1.0 / y if relative else np.ones_like(y)
    design = np.stack([np.ones_like(x), x], axis=1) * weights[:, None]
    (intercept, slope), *_ = np.linalg.lstsq(design, y * weights, rcond=None)
    if slope <= 0:
        raise ValueError(f"fitted seconds-per-byte is {slope:.3g} (not > 0): the times do not grow with size")
    alpha = intercept / (2 * (n - 1))
    bandwidth = 2 * (n - 1) / n / slope
    return float(alpha), float(bandwidth)
