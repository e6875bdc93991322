"""Optimizer-state memory per rank with and without ZeRO stage 1: measured on 1 and 2 MPI ranks, then projected.

Measured. For the GPT presets nano, baby, mini and small (vocabulary 65), this
script launches itself under `mpirun -n 1` and `mpirun -n 2`, once per preset
and optimizer: DistributedDataParallel + AdamW ("plain") or DDP +
ZeroRedundancyOptimizer(AdamW) ("zero"), the Trainer's parameter groups
(weight decay 0.1 on the matrices), two real training steps (forward,
backward, all-reduce, clipping, optimizer step) on 2 sequences per rank of the
preset's context (the second step's forward and backward run with the moments
already allocated, as every later step would). Each rank reports the
bytes of the Adam moments it holds (ZeroRedundancyOptimizer.local_state_nbytes();
for plain AdamW the same sum over its state) and its process's peak resident
memory (resource.getrusage ru_maxrss), and the resident memory after the steps
(/proc/self/statm). Every (preset, optimizer, ranks) runs in its own
processes, so each peak belongs to that run alone. RSS includes the
interpreter, NumPy and Numba's compiled kernels (nano's whole process peaks at
192 MB, 55 MB of it before the first step), the weights,
gradients, DDP's buckets, the activations and the all-gather's buffer, so only
the moments' bytes show the 1/N effect cleanly; the RSS columns show how much
of a whole process the optimizer state is at these sizes.

Projected (no run): float32 training with AdamW, P parameters, N ranks, bytes per rank

    plain DDP:  weights 4 P + gradients 4 P + moments 8 P       = 16 P
    ZeRO-1:     weights 4 P + gradients 4 P + moments 8 P / N   =  8 P + 8 P / N

(Rajbhandari et al. 2020, sec. 5.1, write this as 2 Psi + 2 Psi + K Psi / N for
mixed precision, K = 12: fp32 master weights and both moments; minilm trains in
float32 only, so here K = 8 and the weights and gradients take 4 bytes each.)
Activations, buffers and the framework are not included. For nano .. small and
GPT-2 124M, N = 1, 2, 8, 64.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        python benchmarks/zero_memory.py          # launches the 16 mpirun runs itself

Writes benchmarks/results/zero_memory.json (atomically) and prints both tables.

Measured (2026-12-04, the 2-core development machine shared with other jobs, load
average ~2; 27-34 s wall per run), three runs of the command, the last one
committed: on 2 ranks ZeRO-1 holds 0.49 / 0.51 of the moments per rank (nano ..
small; the two shares add up to exactly 8 bytes x the parameters), 42.5 / 43.7 MB
instead of 86.2 MB for small. Peak RSS per rank on 2 ranks, lowest..highest
over the three runs and both ranks, plain -> ZeRO-1: baby 214..216 -> 211..213 MB,
mini 274..280 -> 266..269 MB, small 525..545 -> 484..498 MB: the saving is about
the moments no longer held (3.2, 10.8, 43 MB), and nano's 0.36 MB is lost in the
process. The RSS after the steps jumps by up to ~50 MB between runs and ranks
(whether the allocator has given freed activations back), so the peak is the
steadier figure. On 1 rank ZeRO-1 holds exactly what AdamW holds and the peaks
are equal (small: 517..518 MB both).
"""
import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "zero_memory.json"
PRESETS = ("nano", "baby", "mini", "small")
PROJECTED = ("nano", "baby", "mini", "small", "gpt2")
RANKS = (1, 2)
PROJECTED_RANKS = (1, 2, 8, 64)
VOCAB, PER_RANK_BATCH, WD, STEPS = 65, 2, 0.1, 2
MB = 1e6


def config_for(name):
    from minilm.models import GPTConfig
    if name == "gpt2":
        return GPTConfig.preset("gpt2", dropout=0.0)
    return GPTConfig.preset(name, vocab_size=VOCAB, dropout=0.0)


def current_rss():
    """Resident bytes now (Linux /proc/self/statm), or None elsewhere: what the process holds between steps."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


# ----- one measurement, run by every rank under mpirun -------------------------------------------------
def measure(preset, mode, out):
    from minilm.distributed import DistributedDataParallel, shard_batch, world
    from minilm.distributed.zero import ZeroRedundancyOptimizer
    from minilm.models import GPT
    from minilm.optim import AdamW, clip_grad_norm_, param_groups_for_weight_decay

    comm = world()
    rank, size = comm.Get_rank(), comm.Get_size()
    config = config_for(preset)
    model = GPT(config, generator=np.random.default_rng(0))
    ddp = DistributedDataParallel(model, comm)
    groups = param_groups_for_weight_decay(model.named_parameters(), WD)
    if mode == "zero":
        opt = ZeroRedundancyOptimizer(groups, comm, optimizer_class=AdamW, lr=1e-3)
    else:
        opt = AdamW(groups, lr=1e-3)
    rss_before_step = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rng = np.random.default_rng(1)
    x = rng.integers(0, VOCAB, (PER_RANK_BATCH * size, config.block_size + 1))
    local = shard_batch({"idx": x[:, :-1], "targets": x[:, 1:]}, rank, size)
    step_s = []
    for _ in range(STEPS):          # the second step runs with the moments already allocated
        start = time.perf_counter()
        ddp(local["idx"], local["targets"])[1].backward()
        ddp.finish()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        step_s.append(time.perf_counter() - start)
    if mode == "zero":
        local_bytes, full_bytes = opt.local_state_nbytes(), opt.full_state_nbytes()
        owned = [int(sum(p.data.size for p in g["params"])) for g in opt.optim.param_groups] if opt.optim else [0]
        owned, partition = sum(owned), opt.partition
    else:
        local_bytes = int(sum(v.nbytes for s in opt.state.values() for v in s.values() if hasattr(v, "nbytes")))
        full_bytes, owned, partition = local_bytes, sum(p.data.size for p in model.parameters()), None
    row = {"preset": preset, "mode": mode, "ranks": size, "rank": rank,
           "parameters": int(sum(p.data.size for p in model.parameters())),
           "owned_parameters": int(owned), "partition": partition,
           "state_bytes_this_rank": int(local_bytes), "state_bytes_unsharded": int(full_bytes),
           "weights_bytes": int(sum(p.data.nbytes for p in model.parameters())),
           "peak_rss_before_step_bytes": int(rss_before_step),
           "peak_rss_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),   # Linux: KiB
           "rss_after_steps_bytes": current_rss(),
           "step_s": step_s, "allgather_rounds": getattr(opt, "allgather_rounds", None),
           "allgather_bucket_mb": getattr(opt, "allgather_bucket_mb", None)}
    rows = comm.gather(row, root=0)
    if rank == 0:
        Path(out).write_text(json.dumps(rows))


# ----- the driver -----------------------------------------------------------------------------------------
def launch_all():
    launcher = shutil.which("mpirun") or shutil.which("mpiexec")
    if launcher is None:
        raise SystemExit("zero_memory: needs mpi4py and mpirun (pip install mpi4py mpich)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in PRESETS:
            for n in RANKS:
                for mode in ("plain", "zero"):
                    out = Path(tmp) / f"{preset}-{n}-{mode}.json"
                    cmd = [launcher, "-n", str(n), sys.executable, str(Path(__file__).resolve()),
                           "--measure", preset, mode, str(out)]
                    subprocess.run(cmd, check=True, env=env, timeout=600)
                    got = json.loads(out.read_text())
                    rows += got
                    print(f"  measured {preset} on {n} rank(s), {mode}: moments per rank "
                          + ", ".join(f"{r['state_bytes_this_rank'] / MB:.3f}" for r in got) + " MB", flush=True)
    return rows


def projection():
    rows = []
    for name in PROJECTED:
        P = config_for(name).num_parameters(non_embedding=False)
        for n in PROJECTED_RANKS:
            plain = 16 * P
            zero = 4 * P + 4 * P + 8 * P / n
            rows.append({"preset": name, "parameters": P, "ranks": n, "weights_bytes": 4 * P, "grads_bytes": 4 * P,
                         "moments_bytes_plain": 8 * P, "moments_bytes_zero1": 8 * P / n,
                         "total_bytes_plain": plain, "total_bytes_zero1": zero, "zero1_over_plain": zero / plain})
    return rows


def print_tables(measured, projected):
    print("\nMeasured after two training steps (moments = AdamW's exp_avg + exp_avg_sq held by the rank; "
          "peak RSS = the whole process)")
    print("| preset | parameters | ranks | optimizer | moments per rank (MB) | of unsharded | RSS after the steps (MB) "
          "| peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in measured:
        full = r["state_bytes_unsharded"]
        moments = " / ".join(f"{b / MB:.3f}" for b in r["state_bytes"])
        shares = " / ".join(f"{b / full:.2f}" for b in r["state_bytes"])
        rss = " / ".join(f"{b / MB:.0f}" for b in r["peak_rss"])
        now = " / ".join(f"{b / MB:.0f}" if b is not None else "-" for b in r["rss_after_steps"])
        print(f"| {r['preset']} | {r['parameters']:,} | {r['ranks']} | {r['mode']} | {moments} | {shares} | {now} | "
              f"{rss} |")
    print("\nProjected per-rank bytes, float32 AdamW: plain 16 P, ZeRO-1 8 P + 8 P / N (weights 4 P + grads 4 P + "
          "moments 8 P / N)")
    print("| model | parameters | plain DDP (MB) | ZeRO-1 N=1 | N=2 | N=8 | N=64 |")
    print("|---|---|---|---|---|---|---|")
    for name in PROJECTED:
        rs = [r for r in projected if r["preset"] == name]
        print(f"| {name} | {rs[0]['parameters']:,} | {rs[0]['total_bytes_plain'] / MB:,.1f} | "
              + " | ".join(f"{r['total_bytes_zero1'] / MB:,.1f}" for r in rs) + " |")


def summarise(rows):
    """One line per (preset, ranks, mode), the ranks' numbers side by side."""
    out = []
    for preset in PRESETS:
        for n in RANKS:
            for mode in ("plain", "zero"):
                rs = sorted((r for r in rows if (r["preset"], r["ranks"], r["mode"]) == (preset, n, mode)),
                            key=lambda r: r["rank"])
                out.append({"preset": preset, "ranks": n, "mode": mode, "parameters": rs[0]["parameters"],
                            "partition": rs[0]["partition"], "owned_parameters": [r["owned_parameters"] for r in rs],
                            "state_bytes": [r["state_bytes_this_rank"] for r in rs],
                            "state_bytes_unsharded": rs[0]["state_bytes_unsharded"],
                            "peak_rss": [r["peak_rss_bytes"] for r in rs],
                            "peak_rss_before_step": [r["peak_rss_before_step_bytes"] for r in rs],
                            "rss_after_steps": [r["rss_after_steps_bytes"] for r in rs],
                            "step_s": [r["step_s"] for r in rs],
                            "allgather_rounds": rs[0]["allgather_rounds"],
                            "allgather_bucket_mb": rs[0]["allgather_bucket_mb"]})
    for s in out:       # the measured moments are exactly 2 moments x 4 bytes x the parameters a rank owns
        assert s["state_bytes"] == [8 * o for o in s["owned_parameters"]], s
        held = sum(s["state_bytes"]) if s["mode"] == "zero" else s["state_bytes"][0]
        assert held == s["state_bytes_unsharded"] == 8 * s["parameters"], s
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure", nargs=3, metavar=("PRESET", "MODE", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if args.measure:                       # a child under mpirun: a failure aborts every rank (no hang)
        try:
            measure(*args.measure)
        except BaseException:
            import traceback
            traceback.print_exc()
            sys.stderr.flush()
            from minilm.distributed import world
            world().Abort(1)
        return
    from minilm.io.atomic import atomic_write_text
    start = time.time()
    measured = summarise(launch_all())
    projected = projection()
    print_tables(measured, projected)
    wall = time.time() - start
    result = {
        "what": "AdamW moment bytes per rank with and without ZeRO-1 (measured, 1 and 2 ranks) and the "
                "per-rank bytes of float32 training projected for N = 1, 2, 8, 64",
        "command": "python benchmarks/zero_memory.py",
        "formula": {"plain": "4 P weights + 4 P grads + 8 P moments = 16 P",
                    "zero1": "4 P weights + 4 P grads + 8 P / N moments",
                    "source": "Rajbhandari et al. 2020 (ZeRO), sec. 5.1: 2Psi + 2Psi + K Psi / N_d with K = 12 "
                              "for mixed precision; float32 here: 4 + 4 + 8 / N bytes per parameter"},
        "setup": {"vocab_size": VOCAB, "sequences_per_rank": PER_RANK_BATCH, "weight_decay_groups": True,
                  "training_steps": STEPS, "threads_per_rank": 1},
        "rss_note": "peak RSS (ru_maxrss) and RSS after the steps (/proc/self/statm) include the interpreter, "
                    "NumPy/Numba, weights, gradients, DDP buckets, activations and the all-gather buffer: only the "
                    "moments' bytes show the 1/N effect cleanly; the RSS after the steps also depends on whether "
                    "the allocator returned freed memory",
        "measured": measured, "projected": projected, "wall_s": wall,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
