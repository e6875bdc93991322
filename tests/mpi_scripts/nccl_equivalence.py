"""Run under `mpirun -n N python tests/mpi_scripts/nccl_equivalence.py` on a machine with >= N GPUs (N = 1 works).

Data parallelism with the gradients reduced by NCCL on the GPU:

1. plumbing: NCCL's unique id goes from rank 0 to every rank over MPI, a
   buffer on the device is all-reduced on the side stream; the result is
   the sum over ranks (with one rank: the input itself);
2. a tiny GPT on the "cuda" kernel backend, trained alone on the whole
   global batch, is reproduced by DistributedDataParallel(backend="nccl")
   on the shards (accumulation 2, clipping acting, AdamW) to 1e-5, with
   overlap (several buckets) and without; the bucket buffers are CuPy
   arrays and the averaged gradients stay on the device;
3. backend="auto" picks NCCL for CuPy parameters; backend="nccl" for a
   model on the CPU is a clear error on every rank.

Rank 0 prints "ok <json>" as each check passes and "ALL OK" at the end;
any failure aborts every rank (MPI_Abort) so the calling test never hangs.
"""
import numpy as np

import mpi_common
from mpi_common import expect_error, report

STEPS, ACCUM, GLOBAL_BATCH, CLIP, LR = 3, 2, 8, 0.5, 3e-3
LOSS_RTOL = WEIGHT_ATOL = 1e-5        # float32 rounding of a different summation order (see ddp_equivalence.py)


def gpt_model(device="cuda"):
    model = mpi_common.gpt_model()
    return model.to(device) if device == "cuda" else model


def gpt_batches():
    """Host (NumPy) global micro-batches, the same on every rank; sharded on the host, then moved."""
    return mpi_common.gpt_batches(GLOBAL_BATCH // ACCUM, seed=0, count=STEPS * ACCUM)


def loss_of(model, batch):
    import cupy
    return model(cupy.asarray(batch["idx"]), cupy.asarray(batch["targets"]))[1]


def train_alone():
    from minilm.optim import AdamW, clip_grad_norm_
    model = gpt_model()
    opt = AdamW(model.parameters(), lr=LR)
    losses, norms, it = [], [], gpt_batches()
    for _ in range(STEPS):
        total = 0.0
        for _ in range(ACCUM):
            loss = loss_of(model, next(it))
            (loss * (1.0 / ACCUM)).backward()
            total += loss.item() / ACCUM
        norms.append(float(clip_grad_norm_(model.parameters(), CLIP)))
        opt.step()
        opt.zero_grad()
        losses.append(total)
    return model, losses, norms


def train_ddp(comm, device, overlap, bucket_cap_mb):
    from mpi4py import MPI

    from minilm.backend import is_cupy
    from minilm.distributed import DistributedDataParallel, shard_batch
    from minilm.optim import AdamW, clip_grad_norm_
    model = gpt_model()
    rank, size = comm.Get_rank(), comm.Get_size()
    if rank != 0:                     # a different start on purpose: the broadcast must fix it
        for p in model.parameters():
            p.data[...] += 1.0
    ddp = DistributedDataParallel(model, comm, bucket_cap_mb=bucket_cap_mb, overlap=overlap, backend="nccl")
    assert ddp.backend == "nccl", ddp.backend
    for b in ddp.buckets:
        assert is_cupy(b.buffer) and b.buffer.device.id == device, f"bucket {b.index}: {type(b.buffer)}"
    opt = AdamW(model.parameters(), lr=LR)
    losses, norms, it = [], [], gpt_batches()
    for _ in range(STEPS):
        total = 0.0
        for micro in range(ACCUM):
            local = shard_batch(next(it), rank, size)
            loss = loss_of(ddp, local)
            if micro < ACCUM - 1:
                with ddp.no_sync():
                    (loss * (1.0 / ACCUM)).backward()
            else:
                (loss * (1.0 / ACCUM)).backward()
                expected = len(ddp.buckets) if overlap else 0
                assert ddp.buckets_started == expected, f"{ddp.buckets_started} buckets started, not {expected}"
            total += comm.allreduce(loss.item() / ACCUM, op=MPI.SUM) / size
        ddp.finish()
        for name, p in model.named_parameters():    # the averaged gradient never left the device
            assert is_cupy(p.grad) and p.grad.device.id == device, f"{name}: grad is {type(p.grad)}"
        for b in ddp.buckets:                        # regrouped buckets after step 1: still on the device
            assert is_cupy(b.buffer), f"bucket {b.index}: {type(b.buffer)}"
        norms.append(float(clip_grad_norm_(model.parameters(), CLIP)))
        opt.step()
        opt.zero_grad()
        losses.append(total)
    return model, ddp, losses, norms


def compare(comm, device, name, overlap, bucket_cap_mb):
    ref, ref_losses, ref_norms = train_alone()
    model, ddp, losses, norms = train_ddp(comm, device, overlap, bucket_cap_mb)
    assert min(ref_norms) > CLIP, f"{name}: clipping never acted (norms {ref_norms})"
    np.testing.assert_allclose(losses, ref_losses, rtol=LOSS_RTOL, err_msg=f"{name}: losses")
    np.testing.assert_allclose(norms, ref_norms, rtol=LOSS_RTOL, err_msg=f"{name}: clipped norms")
    worst = 0.0
    for (pname, p), q in zip(model.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=0, atol=WEIGHT_ATOL, err_msg=f"{name}: weight {pname}")
        worst = max(worst, float(np.max(np.abs(p.numpy() - q.numpy()))))
    digests = comm.allgather(b"".join(p.numpy().tobytes() for p in model.parameters()))
    assert all(d == digests[0] for d in digests), f"{name}: the ranks' weights diverged"
    return {"check": name, "ranks": comm.Get_size(), "buckets": len(ddp.buckets), "backend": ddp.backend,
            "bytes_per_step": ddp.bytes_per_step, "last_wait_s": ddp.last_wait_s,
            "max_loss_rel_err": max(abs(a - b) / abs(b) for a, b in zip(losses, ref_losses)),
            "max_weight_abs_err": worst, "losses": losses, "ref_norms": ref_norms}


def plumbing(comm, device):
    """One buffer on the device all-reduced by NCCL: rank r contributes arange(n) + r."""
    import cupy

    from minilm.distributed.nccl import NcclReducer
    rank, size = comm.Get_rank(), comm.Get_size()
    reducer = NcclReducer(comm, device)
    n = 1000
    buf = cupy.arange(n, dtype=cupy.float32) + rank
    reducer.wait([reducer.start(buf)])
    expected = size * np.arange(n, dtype=np.float32) + size * (size - 1) / 2
    np.testing.assert_array_equal(cupy.asnumpy(buf), expected, err_msg="NCCL allReduce (start/wait)")
    again = cupy.ones(n, dtype=cupy.float32)
    reducer.sum(again)
    np.testing.assert_array_equal(cupy.asnumpy(again), np.full(n, size, np.float32), err_msg="NCCL sum")
    return {"check": "nccl plumbing", "ranks": size, "device": device, "cupy": cupy.__version__,
            "nccl_version": _nccl_version()}


def _nccl_version():
    try:
        from cupy.cuda import nccl
        return nccl.get_version()
    except Exception as err:         # the version is only informative
        return repr(err)


def main():
    import minilm
    from minilm.distributed import DistributedDataParallel, world
    from minilm.distributed import nccl as dist_nccl
    comm = world()
    problem = dist_nccl.unavailable_reason()
    assert problem is None, problem
    device = dist_nccl.select_device(comm)
    assert minilm.set_backend("cuda") == "cuda", "the cuda kernel backend did not load (see the warning above)"

    report(comm, plumbing(comm, device))
    tiny_cap = 8 * 1024 / 2 ** 20             # 8 KiB: several buckets for this tiny model
    r = compare(comm, device, "gpt nccl overlap tiny-buckets", True, tiny_cap)
    assert r["buckets"] > 3, r["buckets"]
    report(comm, r)
    r = compare(comm, device, "gpt nccl no-overlap", False, 25.0)
    assert r["buckets"] == 1, r["buckets"]
    report(comm, r)

    auto = DistributedDataParallel(gpt_model(), comm)
    assert auto.backend == "nccl", f"backend='auto' chose {auto.backend!r} for CuPy parameters"
    auto.remove_hooks()
    msg = expect_error(lambda: DistributedDataParallel(gpt_model("cpu"), comm, backend="nccl"), ValueError,
                       "parameters are on cpu")
    report(comm, {"check": "backend choice", "auto": auto.backend, "cpu_model_nccl_error": msg})
    if comm.Get_rank() == 0:
        print("ALL OK", flush=True)


if __name__ == "__main__":
    mpi_common.run(main)
