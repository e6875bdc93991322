"""Benchmark the Numba CPU kernels against plain-NumPy reference ops, side by side, and print a table.

    python benchmarks/bench_kernels.py [--repeats 7] [--threads N] [--blas-threads N] [--ladder-only]

For every op at the "small" GPT shapes it times the forward, and the forward + backward together
(what a training step pays), for the NumPy reference (benchmarks/_reference_ops.py) and for
minilm.kernels.cpu.  Reference and kernel runs alternate, each repeated --repeats times after a
warm-up call (so compilation is never timed); the table shows medians.  In the same run it
measures the machine's ceilings: fp32 GEMM GFLOP/s through NumPy's BLAS and copy bandwidth.

Rates: attention in GFLOP/s counting the useful matmul work only (forward 4 B H Tq Tk D, halved
when causal; backward twice the forward; the kernel's recomputation of P is not credited), the
element-wise ops in GB/s of compulsory traffic (every input read once, every output written once).
"Of ceiling" compares with the measured GEMM rate, or with a plain copy of the same number of bytes
(so a working set that stays in cache is compared with a copy that stays in cache too).
The attention ladder: after that table, every version of minilm.kernels.cpu.ATTENTION_VERSIONS
(v1 the plain row-wise port, v2 the online softmax, v3 the tiled kernel) and the NumPy reference are
timed in turn at the same shape, forward and forward + backward, with each version's largest
difference from the reference (a timing of a wrong answer is worthless), and the fastest is named.
With a CUDA device (CuPy), minilm.kernels.cuda's three versions are timed the same way (CUDA events).
--ladder-only skips the per-op table.
On a shared machine absolute times drift from run to run: compare the ratios of one run, and
trust no run made while other processes keep the cores busy (the load average is printed).
"""
import argparse
import os
import platform
import statistics
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per variant (median reported; >= 5)")
    parser.add_argument("--threads", type=int, default=None, help="Numba threads (default: all cores)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="BLAS threads for the NumPy reference (sets OPENBLAS/OMP/MKL_NUM_THREADS; "
                             "default: all cores)")
    parser.add_argument("--ladder-only", action="store_true", help="time only the attention ladder")
    return parser.parse_args()


ARGS = parse_args()
if ARGS.blas_threads:  # must happen before NumPy loads its BLAS
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = str(ARGS.blas_threads)
if ARGS.threads:  # minilm sizes Numba's pool to one thread unless NUMBA_NUM_THREADS asks for more
    os.environ["NUMBA_NUM_THREADS"] = str(ARGS.threads)

import numba  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _reference_ops as ref  # noqa: E402

import minilm.kernels.cpu as fast  # noqa: E402


def timed(fn):
    """Seconds one call of fn takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(fn_a, fn_b, repeats):
    """Median seconds of fn_a and of fn_b, alternating calls after one warm-up call each."""
    fn_a()
    fn_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(timed(fn_a))
        times_b.append(timed(fn_b))
    return statistics.median(times_a), statistics.median(times_b)


def round_robin(fns, repeats):
    """Median seconds of every fn in the dict, after one warm-up call each; the fns take turns in every
    round, so a burst of load from elsewhere hits all of them rather than one."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def print_table(header, rows):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


LADDER_SHAPE = (8, 6, 256, 64)  # B, H, T, D of the "small" GPT preset; causal


def attention_ladder(repeats):
    """Time the NumPy reference and every CPU attention version, forward and forward + backward."""
    B, H, T, D = LADDER_SHAPE
    rng = np.random.default_rng(1)
    q, k, v, dout = (rng.standard_normal((B, H, T, D), dtype=np.float32) for _ in range(4))
    flops_fwd = 4 * B * H * T * T * D / 2  # causal: half the score matrix is useful

    def ref_fb():
        o, saved = ref.attention_forward(q, k, v, causal=True)
        ref.attention_backward(q, k, v, saved, dout)

    forward = {"NumPy reference": lambda: ref.attention_forward(q, k, v, causal=True)}
    both = {"NumPy reference": ref_fb}
    want = ref.attention_forward(q, k, v, causal=True)[0]
    error = {"NumPy reference": 0.0}
    for name, (fwd, bwd) in fast.ATTENTION_VERSIONS.items():
        def fb(fwd=fwd, bwd=bwd):
            o, lse = fwd(q, k, v, causal=True)
            bwd(q, k, v, o, lse, dout, causal=True)
        forward[name] = lambda fwd=fwd: fwd(q, k, v, causal=True)
        both[name] = fb
        error[name] = float(np.abs(fwd(q, k, v, causal=True)[0] - want).max())
    t_fwd = round_robin(forward, repeats)
    t_fb = round_robin(both, repeats)
    print("\nattention ladder, B%d H%d T%d D%d causal, minilm.kernels.cpu.ATTENTION_VERSIONS (medians of %d; "
          "'x ref' = NumPy reference time / this time)" % (B, H, T, D, repeats))
    rows = []
    for name in forward:
        rows.append((name, "%.2f" % (1e3 * t_fwd[name]), "%.2fx" % (t_fwd["NumPy reference"] / t_fwd[name]),
                     "%.1f" % (flops_fwd / t_fwd[name] / 1e9), "%.2f" % (1e3 * t_fb[name]),
                     "%.2fx" % (t_fb["NumPy reference"] / t_fb[name]), "%.1f" % (3 * flops_fwd / t_fb[name] / 1e9),
                     "%.1e" % error[name]))
    print_table(("version", "fwd ms", "x ref", "GFLOP/s", "fwd+bwd ms", "x ref", "GFLOP/s", "max |out - ref|"), rows)
    fastest = min(fast.ATTENTION_VERSIONS, key=lambda n: t_fb[n])
    used = next(n for n, (fwd, _) in fast.ATTENTION_VERSIONS.items() if fwd is fast.KERNELS["attention_forward"])
    print("fastest version (fwd+bwd) in this run: %s; the backend's KERNELS use: %s" % (fastest, used))


def cuda_attention_ladder(repeats):
    """Time minilm.kernels.cuda's attention versions on the GPU (CUDA events), if there is one."""
    import minilm.kernels.cuda as kcuda
    if not kcuda.is_available():
        print("\nCUDA attention ladder: no CuPy or no CUDA device here; not timed")
        return
    import cupy as cp
    B, H, T, D = LADDER_SHAPE
    rng = np.random.default_rng(1)
    q, k, v, dout = (cp.asarray(rng.standard_normal((B, H, T, D), dtype=np.float32)) for _ in range(4))

    def gpu_ms(fn):
        fn()
        start, end = cp.cuda.Event(), cp.cuda.Event()
        times = []
        for _ in range(repeats):
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, end))
        return statistics.median(times)

    print("\nCUDA attention ladder, B%d H%d T%d D%d causal (GPU ms, medians of %d)" % (B, H, T, D, repeats))
    rows = []
    for name, (fwd, bwd) in kcuda.ATTENTION_VERSIONS.items():
        def fb(fwd=fwd, bwd=bwd):
            o, lse = fwd(q, k, v, causal=True)
            bwd(q, k, v, o, lse, dout, causal=True)
        rows.append((name, "%.3f" % gpu_ms(lambda fwd=fwd: fwd(q, k, v, causal=True)), "%.3f" % gpu_ms(fb)))
    print_table(("version", "fwd ms", "fwd+bwd ms"), rows)


def gemm_ceiling(repeats):
    """fp32 GEMM GFLOP/s through NumPy (BLAS) on a GPT-shaped matmul: (4096, 384) @ (384, 1536)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4096, 384), dtype=np.float32)
    b = rng.standard_normal((384, 1536), dtype=np.float32)
    out = np.empty((4096, 1536), np.float32)
    np.matmul(a, b, out=out)
    seconds = statistics.median(timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return 2 * 4096 * 384 * 1536 / seconds / 1e9


def copy_bandwidth(n_bytes, repeats):
    """GB/s (bytes read + bytes written) of copying n_bytes into an existing array."""
    src = np.ones(n_bytes // 4, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    seconds = statistics.median(timed(lambda: np.copyto(dst, src)) for _ in range(repeats))
    return 2 * src.nbytes / seconds / 1e9


def thread_report():
    lines = ["numba threads: %d (threading layer: %s)" % (numba.get_num_threads(), numba.threading_layer())]
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        lines.append("BLAS threads: threadpoolctl not installed (OpenBLAS uses all cores by default)")
    else:
        for pool in threadpool_info():
            lines.append("BLAS threads: %s %s, %d threads"
                         % (pool.get("internal_api"), pool.get("version"), pool["num_threads"]))
    return lines


def cases(rng):
    """The benchmark rows: (name, shape text, work fwd, work fwd+bwd, unit, input bytes,
    ref fwd, ref fwd+bwd, fast fwd, fast fwd+bwd).

    Work is FLOPs for attention and bytes moved for the others (forward: inputs read + outputs written).
    """
    out = []

    # attention, "small" GPT: B=8, H=6, T=256, D=64, causal
    B, H, T, D = 8, 6, 256, 64
    q, k, v, dout = (rng.standard_normal((B, H, T, D), dtype=np.float32) for _ in range(4))
    flops_fwd = 4 * B * H * T * T * D / 2  # causal: half the score matrix is useful

    def ref_attn_fb():
        o, saved = ref.attention_forward(q, k, v, causal=True)
        ref.attention_backward(q, k, v, saved, dout)

    def fast_attn_fb():
        o, lse = fast.attention_forward(q, k, v, causal=True)
        fast.attention_backward(q, k, v, o, lse, dout, causal=True)

    out.append(("attention causal", "B8 H6 T256 D64", flops_fwd, 3 * flops_fwd, "GFLOP/s", q.nbytes,
                lambda: ref.attention_forward(q, k, v, causal=True), ref_attn_fb,
                lambda: fast.attention_forward(q, k, v, causal=True), fast_attn_fb))

    # GELU over (16, 256, 1536), both forms
    x = rng.standard_normal((16, 256, 1536), dtype=np.float32)
    dy = rng.standard_normal(x.shape, dtype=np.float32)
    for form in ("none", "tanh"):
        def ref_gelu_fb(form=form):
            y, saved = ref.gelu_forward(x, form)
            ref.gelu_backward(saved, dy, form)

        def fast_gelu_fb(form=form):
            fast.gelu_forward(x, form)
            fast.gelu_backward(x, dy, form)

        name = "gelu " + ("erf" if form == "none" else "tanh")
        out.append((name, "16x256x1536", 8 * x.size, 20 * x.size, "GB/s", x.nbytes,
                    lambda form=form: ref.gelu_forward(x, form), ref_gelu_fb,
                    lambda form=form: fast.gelu_forward(x, form), fast_gelu_fb))

    # LayerNorm over (16, 256, 384)
    xl = rng.standard_normal((16, 256, 384), dtype=np.float32)
    dyl = rng.standard_normal(xl.shape, dtype=np.float32)
    w = rng.standard_normal(384, dtype=np.float32)
    bias = rng.standard_normal(384, dtype=np.float32)

    def ref_ln_fb():
        y, saved = ref.layer_norm_forward(xl, w, bias)
        ref.layer_norm_backward(saved, dyl)

    def fast_ln_fb():
        y, mean, rstd = fast.layer_norm_forward(xl, w, bias)
        fast.layer_norm_backward(dyl, xl, w, mean, rstd)

    out.append(("layer_norm", "16x256x384", 8 * xl.size, 20 * xl.size, "GB/s", xl.nbytes,
                lambda: ref.layer_norm_forward(xl, w, bias), ref_ln_fb,
                lambda: fast.layer_norm_forward(xl, w, bias), fast_ln_fb))

    # cross-entropy: (16*256, 65) char-level and (16*128, 8000) BERT-mini vocabulary
    for N, V in ((16 * 256, 65), (16 * 128, 8000)):
        logits = rng.standard_normal((N, V), dtype=np.float32)
        targets = rng.integers(0, V, N)
        targets[::10] = -100  # some ignored rows, as with padding

        def ref_ce_fb(logits=logits, targets=targets):
            (loss_sum, n), saved = ref.cross_entropy_forward(logits, targets)
            ref.cross_entropy_backward(saved, 1.0 / max(n, 1))

        def fast_ce_fb(logits=logits, targets=targets):
            loss_sum, n, lse = fast.cross_entropy_forward(logits, targets)
            fast.cross_entropy_backward(logits, targets, lse, 1.0 / max(n, 1))

        out.append(("cross_entropy", "%dx%d" % (N, V), 4 * logits.size, 12 * logits.size, "GB/s", logits.nbytes,
                    lambda logits=logits, targets=targets: ref.cross_entropy_forward(logits, targets), ref_ce_fb,
                    lambda logits=logits, targets=targets: fast.cross_entropy_forward(logits, targets), fast_ce_fb))
    return out


def main():
    repeats = max(5, ARGS.repeats)
    if ARGS.threads:
        numba.set_num_threads(ARGS.threads)

    start = time.perf_counter()
    fast.warmup()
    warm = time.perf_counter() - start
    print("machine: %s, %d cores, Python %s, NumPy %s, Numba %s"
          % (platform.processor() or platform.machine(), os.cpu_count(), platform.python_version(),
             np.__version__, numba.__version__))
    for line in thread_report():
        print(line)
    load = os.getloadavg()[0]
    print("kernel warm-up (compile or cache load): %.2f s; load average at start: %.2f" % (warm, load))
    if load > 0.5:
        print("WARNING: other processes are using the CPUs (load %.2f); timings and ratios are unreliable" % load)
    gemm = gemm_ceiling(repeats)
    dram = copy_bandwidth(256 * 2 ** 20, repeats)
    print("ceilings in this run: fp32 GEMM %.1f GFLOP/s, copy of 256 MiB %.1f GB/s; medians of %d repeats\n"
          % (gemm, dram, repeats))

    if not ARGS.ladder_only:
        per_op_table(repeats, gemm)
    attention_ladder(repeats)
    cuda_attention_ladder(repeats)
    print("\nload average at end: %.2f" % os.getloadavg()[0])


def per_op_table(repeats, gemm):
    header = ("op", "shape", "pass", "NumPy ms", "Numba ms", "speedup", "Numba rate", "of ceiling")
    rows = []
    for name, shape, work_f, work_fb, unit, nbytes, ref_f, ref_fb, fast_f, fast_fb in cases(np.random.default_rng(0)):
        for label, work, ref_fn, fast_fn in (("fwd", work_f, ref_f, fast_f), ("fwd+bwd", work_fb, ref_fb, fast_fb)):
            t_ref, t_fast = side_by_side(ref_fn, fast_fn, repeats)
            rate = work / t_fast / 1e9
            ceiling = gemm if unit == "GFLOP/s" else copy_bandwidth(nbytes, repeats)
            rows.append((name, shape, label, "%.2f" % (t_ref * 1e3), "%.2f" % (t_fast * 1e3),
                         "%.1fx" % (t_ref / t_fast), "%.1f %s" % (rate, unit), "%.0f%%" % (100 * rate / ceiling)))
    print_table(header, rows)


if __name__ == "__main__":
    main()
