"""Data-parallel scaling, measured where this machine can and projected with the ring model where not.

Two ranks on a 2-core machine cannot show a speed-up, so this measures the pieces and projects:

(a) all-reduce time over shared memory: `mpirun -n 2` runs this same file with --measure-allreduce
    (the script launches it itself); MPI_Allreduce (in place, float32, sum) of 4 KB .. 64 MB
    buffers and of each model's gradient size, median of repeats, the slower rank's time per call;
    three mpirun launches, the median of their medians. minilm.distributed.cost_model's
    fit_alpha_bandwidth fits the ring model's alpha and bandwidth, over the sweep and separately
    over buffers up to 16 MB and from 32 MB (the per-byte rate halves in between: cache).
(b) minilm's compute time per training step (forward + backward + AdamW, one thread, random
    tokens, batch 12 sequences of the preset's context, vocabulary 65) for nano, baby, mini and
    small: the median of a few steps after a warm-up one. GPT-2 124M (batch 12 x 1024, vocab
    50257) is not run: its step is estimated from its FLOPs (6N + 12LCT per token) at the FLOP
    rate measured on `small`, and labelled an estimate.
(c) weak-scaling efficiency T_compute / T_step for N = 1 .. 256 ranks over a 10 Gb/s and a
    100 Gb/s network (ASSUMPTIONS below), gradients float32 in 25 MB buckets, no overlap of
    communication with compute (the worst case) and with 2/3 overlap (the best case: all of the
    backward pass). Two compute scenarios: minilm's CPU step as measured, and GPT-2 124M on a
    GPU-class machine at an assumed 100 TFLOP/s.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        python benchmarks/allreduce_projection.py          # 45 s wall, 49 CPU s here
    python benchmarks/allreduce_projection.py --plot-only  # re-project and redraw from the JSON

Writes benchmarks/results/allreduce_projection.json (measurements, fits, assumptions, projections,
published results) and allreduce_projection.png. Needs mpi4py and an `mpirun` for part (a).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minilm.distributed import cost_model as cm  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
COMMAND = ("OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 "
           "python benchmarks/allreduce_projection.py")
SWEEP_BYTES = [4096 * 2 ** k for k in range(15)]          # 4 KB .. 64 MB
MEASURED_PRESETS = {"nano": 10, "baby": 5, "mini": 3, "small": 3}   # preset: timed steps
BATCH = 12                 # sequences per rank per step (nanoGPT's GPT-2 config uses 12 x 1024)
VOCAB = 65                 # character vocabulary for the small presets (tiny Shakespeare's size)
RANKS = [1, 2, 4, 8, 16, 32, 64, 128, 256]
TABLE_RANKS = [2, 8, 64, 256]
ALLREDUCE_RUNS = 3         # separate mpirun launches: the spread between them is reported

ASSUMPTIONS = {
    "networks": {
        "10 Gb/s": {"bandwidth_bytes_per_s": 1.25e9, "alpha_s": 50e-6,
                    "why": "10 Gb/s Ethernet at full line rate (optimistic: TCP reaches less); "
                           "50 us per ring step is an assumed kernel-TCP round of a few tens of us"},
        "100 Gb/s": {"bandwidth_bytes_per_s": 1.25e10, "alpha_s": 5e-6,
                     "why": "100 Gb/s InfiniBand or RoCE at full line rate; 5 us per ring step is an "
                            "assumed RDMA latency of a few us plus software"},
    },
    "ring": "every rank on its own machine, one link each, ring all-reduce "
            "T = 2 (N-1) alpha + 2 (N-1)/N B / bandwidth (Patarasuk & Yuan 2009)",
    "gradients": "float32, 4 bytes per parameter (all parameters, position table included)",
    "buckets": "25 MB buckets (PyTorch DDP's default bucket_cap_mb), one ring each, one after another",
    "scaling": "weak scaling: batch per rank fixed, so T_compute does not change with N",
    "overlap": "0 (communication after the backward pass: the worst case) and 2/3 (communication "
               "hidden behind the whole backward pass, 4N of the 6N FLOPs per token: the best case)",
    "gpu_class_flops_per_s": 1e14,
    "gpu_class_why": "an assumption, not a measurement: 100 TFLOP/s sustained, about a third of an "
                     "A100's 312 TFLOP/s dense bf16 peak (NVIDIA A100 datasheet)",
    "not_modelled": "network contention, hierarchical or tree all-reduce (NCCL switches to trees at "
                    "scale), several GPUs per machine sharing a fast local link, stragglers, "
                    "gradient compression, the optimizer step's own cost beyond T_compute",
}

PUBLISHED = [
    {"source": "Goyal et al. 2017, Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour (arXiv:1706.02677)",
     "result": "ResNet-50 on 256 GPUs (Caffe2, commodity hardware): ~90% scaling efficiency from 8 to 256 GPUs"},
    {"source": "Horovod documentation, benchmarks page (Sergeev & Del Balso 2018, arXiv:1802.05799)",
     "result": "128 servers x 4 Pascal GPUs over 25 Gb/s RoCE (512 GPUs): 90% scaling efficiency for "
               "Inception V3 and ResNet-101, 68% for VGG-16"},
    {"source": "Li et al. 2020, PyTorch Distributed: Experiences on Accelerating Data Parallel Training (VLDB 13(12))",
     "result": "near-linear scalability on 256 GPUs when configured appropriately; bucketing gradients "
               "(25 MB default) and overlapping their all-reduce with the backward pass are what get it there"},
]


# ----- (a) all-reduce over shared memory, run under mpirun ---------------------------------------
def repeats_for(nbytes):
    """More repeats for small buffers (noisy, cheap), fewer for large ones (about 0.1 s each)."""
    return 200 if nbytes <= 256 * 1024 else 40 if nbytes <= 4 * 2 ** 20 else 10 if nbytes <= 64 * 2 ** 20 else 3


def measure_allreduce(out_path, extra_bytes):
    """Rank 0 writes {bytes: median seconds}; each call's time is the slower rank's."""
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    sizes = sorted(set(SWEEP_BYTES) | set(extra_bytes))
    medians = {}
    for nbytes in sizes:
        buf = np.ones(nbytes // 4, dtype=np.float32)
        for _ in range(3):                                     # warm-up: page faults, MPICH set-up
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        times = []
        for _ in range(repeats_for(nbytes)):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            elapsed = time.perf_counter() - t0
            times.append(comm.allreduce(elapsed, op=MPI.MAX))
        medians[nbytes] = {"median_s": statistics.median(times), "repeats": len(times)}
        del buf
    if comm.rank == 0:
        Path(out_path).write_text(json.dumps({"ranks": comm.size, "mpi": MPI.Get_library_version().strip(),
                                              "points": [{"bytes": b, **v} for b, v in medians.items()]}))


def combine_runs(runs):
    """Several mpirun runs -> one list of points: the median over runs of each size's median."""
    points = []
    for i, p in enumerate(runs[0]["points"]):
        per_run = [r["points"][i]["median_s"] for r in runs]
        points.append({"bytes": p["bytes"], "median_s": statistics.median(per_run), "run_medians_s": per_run,
                       "repeats_per_run": p["repeats"]})
    return {"ranks": runs[0]["ranks"], "mpi": runs[0]["mpi"], "runs": len(runs), "points": points}


def fit_regimes(allreduce):
    """The ring fit over the whole sweep, over the buffers that stay in cache and over those that
    do not (the measured per-byte rate halves between 16 and 32 MB), and over each run alone."""
    sweep = [p for p in allreduce["points"] if p["bytes"] in SWEEP_BYTES]
    groups = {"all sweep sizes": sweep,
              "<= 16 MB (incl. gradients)": [p for p in allreduce["points"] if p["bytes"] <= 16 * 2 ** 20],
              ">= 32 MB (incl. gradients)": [p for p in allreduce["points"] if p["bytes"] >= 32 * 2 ** 20]}
    for r in range(allreduce["runs"]):
        groups[f"run {r + 1} alone, all sweep sizes"] = [{**p, "median_s": p["run_medians_s"][r]} for p in sweep]
    fits = {}
    for name, pts in groups.items():
        alpha, bw = cm.fit_alpha_bandwidth([p["bytes"] for p in pts], [p["median_s"] for p in pts], n=2)
        fits[name] = {"alpha_s": alpha, "bandwidth_bytes_per_s": bw, "sizes": len(pts)}
    return fits


def run_allreduce_under_mpirun(extra_bytes):
    mpirun = shutil.which("mpirun")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        mpirun = None
    if mpirun is None:
        raise SystemExit("allreduce_projection: part (a) needs mpi4py and mpirun (pip install mpi4py mpich)")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "allreduce.json"
        cmd = [mpirun, "-n", "2", sys.executable, str(Path(__file__).resolve()), "--measure-allreduce", str(out),
               "--extra-bytes", ",".join(str(b) for b in extra_bytes)]
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
        return json.loads(out.read_text())


# ----- (b) compute per step -----------------------------------------------------------------------
def gpt_config(preset):
    from minilm.models import GPTConfig
    return GPTConfig.preset(preset, dropout=0.0, **({} if preset == "gpt2" else {"vocab_size": VOCAB}))


def measure_compute(preset, steps):
    import minilm
    from minilm.models import GPT
    from minilm.optim import AdamW
    config = gpt_config(preset)
    model = GPT(config, generator=np.random.default_rng(0))
    optimizer = AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(1)

    def step():
        x, y = (rng.integers(0, config.vocab_size, (BATCH, config.block_size)) for _ in range(2))
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()                                                     # warm-up: allocations, JIT
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    tokens = BATCH * config.block_size
    seconds = statistics.median(times)
    return {"preset": preset, "source": "measured", "backend": minilm.get_backend(), "steps": steps,
            "batch": [BATCH, config.block_size], "tokens_per_step": tokens,
            "parameters": model.num_parameters(non_embedding=False),
            "step_s": seconds, "step_s_all": times,
            "flops_per_step": config.flops_per_token() * tokens,
            "flops_per_s": config.flops_per_token() * tokens / seconds}


def estimate_gpt2(flops_per_s, source):
    config = gpt_config("gpt2")
    tokens = BATCH * config.block_size
    flops = config.flops_per_token() * tokens
    return {"preset": "gpt2", "source": source, "batch": [BATCH, config.block_size], "tokens_per_step": tokens,
            "parameters": config.num_parameters(non_embedding=False), "flops_per_step": flops,
            "flops_per_s": flops_per_s, "step_s": flops / flops_per_s}


# ----- (c) projection -----------------------------------------------------------------------------
def project(compute):
    """{scenario: {network: {overlap: [efficiency for N in RANKS]}}} plus comm times."""
    out = {}
    for c in compute:
        nbytes = cm.gradient_bytes(c["parameters"])
        per_net = {}
        for net, a in ASSUMPTIONS["networks"].items():
            alpha, bw = a["alpha_s"], a["bandwidth_bytes_per_s"]
            comm_s = [cm.bucketed_allreduce_time(n, nbytes, alpha, bw) for n in RANKS]
            per_net[net] = {"comm_s": comm_s, "efficiency": {
                name: [cm.scaling_efficiency(n, c["step_s"], nbytes, alpha, bw, overlap=ov,
                                             bucket_bytes=cm.DDP_BUCKET_BYTES) for n in RANKS]
                for name, ov in (("no_overlap", 0.0), ("overlap_2/3", 2 / 3))}}
        out[c["label"]] = {"preset": c["preset"], "compute_source": c["source"], "step_s": c["step_s"],
                           "gradient_bytes": nbytes, "ranks": RANKS, "networks": per_net}
    return out


def print_tables(result):
    fit = result["allreduce_fit"]
    print(f"\n(a) all-reduce over shared memory, 2 ranks: alpha = {fit['alpha_s'] * 1e6:.1f} us per step, "
          f"bandwidth = {fit['bandwidth_bytes_per_s'] / 1e9:.2f} GB/s (fit to the {len(SWEEP_BYTES)} sweep sizes; "
          f"the others are the models' gradient sizes)")
    for name, f in result["allreduce_fits"].items():
        print(f"  fit over {name:<34} alpha {f['alpha_s'] * 1e6:7.1f} us, bandwidth {f['bandwidth_bytes_per_s'] / 1e9:5.2f} GB/s")
    print("  (the >= 32 MB fit's alpha is not a latency: it absorbs the cache knee; read its bandwidth only)")
    print(f"{'bytes':>12} {'median ms':>10} {'per run ms':>26} {'model ms':>9} {'GB/s (B/t)':>10}")
    for p in result["allreduce"]["points"]:
        model = cm.ring_allreduce_time(2, p["bytes"], max(fit["alpha_s"], 0.0), fit["bandwidth_bytes_per_s"])
        runs = " ".join(f"{t * 1e3:.3f}" for t in p["run_medians_s"])
        print(f"{p['bytes']:>12,} {p['median_s'] * 1e3:>10.3f} {runs:>26} {model * 1e3:>9.3f} "
              f"{p['bytes'] / p['median_s'] / 1e9:>10.2f}")
    print("\n(b) compute per step, one thread")
    print("  all-reduce ms: the measured 2-rank all-reduce of the gradient here; eff. 2 ranks: T_compute / "
          "(T_compute + that), what 2 ranks with a core each would reach on this machine")
    measured = {p["bytes"]: p["median_s"] for p in result["allreduce"]["points"]}
    print(f"{'model':<15} {'params':>12} {'grad MB':>8} {'tokens':>7} {'step s':>9} {'GFLOP/s':>9} "
          f"{'all-reduce ms':>13} {'eff. 2 ranks':>12}  source")
    for c in result["compute"]:
        t_ar = measured[cm.gradient_bytes(c["parameters"])]
        print(f"{c['label']:<15} {c['parameters']:>12,} {4 * c['parameters'] / 1e6:>8.1f} {c['tokens_per_step']:>7,} "
              f"{c['step_s']:>9.3f} {c['flops_per_s'] / 1e9:>9.2f} {t_ar * 1e3:>13.2f} "
              f"{c['step_s'] / (c['step_s'] + t_ar):>12.3f}  {c['source']}")
    print("\n(c) projected weak-scaling efficiency (no overlap | 2/3 overlap), 25 MB buckets")
    head = " ".join(f"{'N=' + str(n):>13}" for n in TABLE_RANKS)
    print(f"{'compute':<16} {'network':<9} {head}")
    for label, p in result["projection"].items():
        for net, v in p["networks"].items():
            cells = []
            for n in TABLE_RANKS:
                i = RANKS.index(n)
                cells.append(f"{v['efficiency']['no_overlap'][i]:>6.3f}|{v['efficiency']['overlap_2/3'][i]:<6.3f}")
            print(f"{label:<16} {net:<9} " + " ".join(f"{c:>13}" for c in cells))
    print("\npublished data-parallel results, for the form of the curve:")
    for p in PUBLISHED:
        print(f"  {p['source']}: {p['result']}")


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_mem, *axes) = plt.subplots(1, 3, figsize=(16, 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    points, fit = result["allreduce"]["points"], result["allreduce_fit"]
    sizes = np.array([p["bytes"] for p in points], dtype=float)
    ax_mem.loglog(sizes, [p["median_s"] * 1e3 for p in points], "o", ms=4, label="measured median, 2 ranks")
    grid = np.geomspace(sizes.min(), sizes.max(), 100)
    ax_mem.loglog(grid, [1e3 * cm.ring_allreduce_time(2, b, max(fit["alpha_s"], 0.0), fit["bandwidth_bytes_per_s"])
                         for b in grid], "-", label=f"ring fit: alpha {fit['alpha_s'] * 1e6:.1f} us, "
                                                    f"{fit['bandwidth_bytes_per_s'] / 1e9:.2f} GB/s")
    ax_mem.set_xlabel("bytes all-reduced")
    ax_mem.set_ylabel("ms per all-reduce")
    ax_mem.set_title("MPI_Allreduce over shared memory (measured here)", fontsize=9)
    ax_mem.grid(alpha=0.3, which="both")
    ax_mem.legend(fontsize=7)
    for ax, gpu in zip(axes, (False, True)):
        items = [(k, v) for k, v in result["projection"].items() if k.endswith("GPU-class") == gpu]
        for i, (label, p) in enumerate(items):
            for net, style in (("100 Gb/s", "-"), ("10 Gb/s", "--")):
                eff = p["networks"][net]["efficiency"]
                colour = colours[i % len(colours)]
                ax.plot(RANKS, eff["no_overlap"], style, color=colour, marker="o", ms=3,
                        label=f"{label}, {net}")
                if gpu:
                    ax.plot(RANKS, eff["overlap_2/3"], style, color=colours[(i + 3) % len(colours)], marker="s",
                            ms=3, label=f"{label}, {net}, 2/3 overlap")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ranks N (one per machine)")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        # the GPU panel's 10 Gb/s curves run along the bottom: its legend sits above them
        ax.legend(fontsize=7, loc="center right" if gpu else "lower left", bbox_to_anchor=(1, 0.35) if gpu else None)
    axes[0].set_ylabel("weak-scaling efficiency T_compute / T_step")
    axes[1].sharey(axes[0])
    axes[0].set_title("minilm on one CPU thread per rank (gpt2: estimated), no overlap", fontsize=9)
    axes[1].set_title("GPT-2 124M at an assumed 100 TFLOP/s per rank", fontsize=9)
    fig.suptitle("Ring all-reduce projection, 25 MB buckets; solid 100 Gb/s (alpha 5 us), dashed 10 Gb/s "
                 "(alpha 50 us)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure-allreduce", metavar="OUT", help=argparse.SUPPRESS)   # the mpirun child
    ap.add_argument("--extra-bytes", default="", help=argparse.SUPPRESS)
    ap.add_argument("--plot-only", action="store_true", help="re-project and redraw from the saved JSON")
    args = ap.parse_args()
    if args.measure_allreduce:
        measure_allreduce(args.measure_allreduce, [int(b) for b in args.extra_bytes.split(",") if b])
        return

    json_path = RESULTS / "allreduce_projection.json"
    if args.plot_only:
        result = json.loads(json_path.read_text())
    else:
        from minilm.io.atomic import atomic_write_text
        compute = []
        for preset, steps in MEASURED_PRESETS.items():
            c = measure_compute(preset, steps)
            c["label"] = preset
            compute.append(c)
            print(f"{preset}: {c['step_s']:.3f} s per step, {c['flops_per_s'] / 1e9:.2f} GFLOP/s", flush=True)
        cpu_rate = compute[-1]["flops_per_s"]
        compute.append({**estimate_gpt2(cpu_rate, "estimated: FLOPs at the FLOP rate measured on small"),
                        "label": "gpt2"})
        compute.append({**estimate_gpt2(ASSUMPTIONS["gpu_class_flops_per_s"], "assumed: 100 TFLOP/s"),
                        "label": "gpt2 GPU-class"})
        extra = sorted({cm.gradient_bytes(c["parameters"]) for c in compute})
        allreduce = combine_runs([run_allreduce_under_mpirun(extra) for _ in range(ALLREDUCE_RUNS)])
        fits = fit_regimes(allreduce)
        alpha, bw = fits["all sweep sizes"]["alpha_s"], fits["all sweep sizes"]["bandwidth_bytes_per_s"]
        result = {"command": COMMAND, "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                  "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
                  "allreduce": allreduce,
                  "allreduce_fit": {"alpha_s": alpha, "bandwidth_bytes_per_s": bw, "ranks": 2,
                                    "fit": "relative least squares over the 4 KB .. 64 MB sweep, "
                                           f"medians of {ALLREDUCE_RUNS} mpirun runs"},
                  "allreduce_fits": fits,
                  "compute": compute, "assumptions": ASSUMPTIONS, "published": PUBLISHED}
        atomic_write_text(json_path, json.dumps(result, indent=1) + "\n")
    result["projection"] = project(result["compute"])
    result["ranks"] = RANKS
    from minilm.io.atomic import atomic_write_text
    atomic_write_text(json_path, json.dumps(result, indent=1) + "\n")
    print_tables(result)
    plot(result, RESULTS / "allreduce_projection.png")
    print(f"\nwrote {json_path.relative_to(ROOT)} and allreduce_projection.png")


if __name__ == "__main__":
    main()
