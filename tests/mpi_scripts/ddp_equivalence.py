"""Run under `mpirun -n 2 python tests/mpi_scripts/ddp_equivalence.py`: N ranks reproduce one process.

For a tiny GPT and a tiny BERT (masked LM), every rank first trains a
reference model alone on the whole global batch (gradient accumulation 2,
clipping at a norm the gradients exceed, AdamW), then trains the same
model under DistributedDataParallel on its shard of each micro-batch, and
compares the per-step losses and the final weights. Overlap on (several
small buckets) and off. Then the set-up errors: ranks with different
configs, a global batch that does not divide by the world size.

Rank 0 prints one line per check, "ok <name> <details>", and the last line
"ALL OK"; any failure aborts every rank (MPI_Abort) with a non-zero status,
so the calling test never hangs in a collective that one rank left.
"""
import numpy as np

from minilm.distributed import (DistributedDataParallel, bucket_parameters, check_same_config, shard_batch,
                                shard_loss_scale, world)
from minilm.models import GPT, GPTConfig
from minilm.optim import AdamW, clip_grad_norm_

import mpi_common
from mpi_common import SEQ, VOCAB, bert_loss, bert_model, expect_error, gpt_loss, gpt_model

# float32 tolerance. The sharded run sums the same per-example gradient terms in a different order
# (two half-batch matmuls and an all-reduce instead of one matmul), so results differ by float32 rounding,
# ~1e-7 relative per step, which Adam's normalised updates carry into the weights at about lr * 1e-6.
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5
STEPS, ACCUM, GLOBAL_BATCH, CLIP, LR = 4, 2, 8, 0.5, 3e-3


def gpt_batches():
    """Every rank draws the same global batches: the same data order everywhere."""
    return mpi_common.gpt_batches(GLOBAL_BATCH // ACCUM, seed=0, count=STEPS * ACCUM)


def bert_batches():
    return mpi_common.bert_batches(GLOBAL_BATCH // ACCUM, seed=1, count=STEPS * ACCUM)


def train_alone(make_model, batches, loss_fn):
    """The reference: one process, the whole global batch (as micro-batches), no MPI."""
    model = make_model()
    opt = AdamW(model.parameters(), lr=LR)
    losses, norms, it = [], [], batches()
    for _ in range(STEPS):
        total = 0.0
        for _ in range(ACCUM):
            loss, _ = loss_fn(model, next(it))
            (loss * (1.0 / ACCUM)).backward()
            total += loss.item() / ACCUM
        norms.append(clip_grad_norm_(model.parameters(), CLIP))
        opt.step()
        opt.zero_grad()
        losses.append(total)
    return model, losses, norms


def train_ddp(comm, make_model, batches, loss_fn, overlap, bucket_cap_mb):
    model = make_model()
    if comm.Get_rank() != 0:          # a different start on purpose: the broadcast must fix it
        for p in model.parameters():
            p.data[...] += 1.0
    ddp = DistributedDataParallel(model, comm, bucket_cap_mb=bucket_cap_mb, overlap=overlap)
    opt = AdamW(model.parameters(), lr=LR)
    rank, size = comm.Get_rank(), comm.Get_size()
    losses, norms, it = [], [], batches()
    for _ in range(STEPS):
        total = 0.0
        for micro in range(ACCUM):
            batch = next(it)
            local = shard_batch(batch, rank, size)
            loss, n_local = loss_fn(ddp, local)
            scale = 1.0 / ACCUM
            if n_local is not None:    # masked LM: weight by this shard's share of the masked tokens
                n_global = int((batch["labels"] != -100).sum())
                scale *= shard_loss_scale(n_local, n_global, size)
            if micro < ACCUM - 1:
                with ddp.no_sync():
                    (loss * scale).backward()
            else:
                (loss * scale).backward()
                # with overlap, every bucket's reduction was started by the hooks during that backward
                expected = len(ddp.buckets) if overlap else 0
                assert ddp.buckets_started == expected, f"{ddp.buckets_started} buckets started, not {expected}"
                if overlap and losses:   # after the first step's regrouping, the first bucket (last layers)
                    # started while most gradients were still to come
                    pending = ddp.grads_pending_at_start
                    assert pending[0] > len(ddp.params) // 2, f"no overlap with backward: {pending}"
                    ddp.pending_log = pending
            # the global micro-batch loss: the ranks' (weighted) losses averaged
            total += comm.allreduce(loss.item() * scale, op=_sum(comm)) / size
        ddp.finish()
        norms.append(clip_grad_norm_(model.parameters(), CLIP))   # averaged grads: the ordinary global norm
        opt.step()
        opt.zero_grad()
        losses.append(total)
    return model, ddp, losses, norms


def _sum(comm):
    from mpi4py import MPI
    return MPI.SUM


def compare(comm, name, make_model, batches, loss_fn, overlap, bucket_cap_mb):
    ref, ref_losses, ref_norms = train_alone(make_model, batches, loss_fn)
    model, ddp, losses, norms = train_ddp(comm, make_model, batches, loss_fn, overlap, bucket_cap_mb)
    assert min(ref_norms) > CLIP, f"{name}: clipping never acted (norms {ref_norms}); the test would not test it"
    np.testing.assert_allclose(losses, ref_losses, rtol=LOSS_RTOL, err_msg=f"{name}: losses")
    np.testing.assert_allclose(norms, ref_norms, rtol=LOSS_RTOL, err_msg=f"{name}: clipped norms")
    worst = 0.0
    for (pname, p), q in zip(model.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=0, atol=WEIGHT_ATOL, err_msg=f"{name}: weight {pname}")
        worst = max(worst, float(np.max(np.abs(p.data - q.data))))
    # the replicas are identical to each other (not just close): same averaged grads, same steps
    digests = comm.allgather(b"".join(p.data.tobytes() for p in model.parameters()))
    assert all(d == digests[0] for d in digests), f"{name}: the ranks' weights diverged"
    loss_err = max(abs(a - b) / abs(b) for a, b in zip(losses, ref_losses))
    return {"check": name, "buckets": len(ddp.buckets), "bytes_per_step": ddp.bytes_per_step,
            "grads_pending_at_bucket_starts": getattr(ddp, "pending_log", None), "parameters": len(ddp.params),
            "max_loss_rel_err": loss_err, "max_weight_abs_err": worst, "losses": losses, "ref_norms": ref_norms}


def main():
    comm = world()
    rank, size = comm.Get_rank(), comm.Get_size()
    if size < 2:
        raise SystemExit(f"ddp_equivalence: started as {size} rank; run it with `mpirun -n 2` (if you did, the "
                         f"mpirun on PATH belongs to a different MPI library than mpi4py's)")
    tiny_cap = 8 * 1024 / 2 ** 20             # 8 KiB: several buckets even for these tiny models
    results = [
        compare(comm, "gpt overlap tiny-buckets", gpt_model, gpt_batches, gpt_loss, True, tiny_cap),
        compare(comm, "gpt no-overlap", gpt_model, gpt_batches, gpt_loss, False, 25.0),
        compare(comm, "bert-mlm overlap tiny-buckets", bert_model, bert_batches, bert_loss, True, tiny_cap),
        compare(comm, "bert-mlm no-overlap", bert_model, bert_batches, bert_loss, False, 25.0),
    ]
    assert results[0]["buckets"] > 3 and results[2]["buckets"] > 3, "the tiny cap should give several buckets"
    assert results[1]["buckets"] == 1, "the default 25 MB cap should hold this model in one bucket"
    assert len(bucket_parameters(gpt_model().parameters(), tiny_cap)) == results[0]["buckets"]

    # ranks with different configs: every rank raises, naming the odd one out
    cfg = GPTConfig.preset("nano", vocab_size=VOCAB, n_embd=36 if rank == 0 else 48)
    msg = expect_error(lambda: check_same_config(cfg, comm), ValueError, f"ranks {list(range(1, size))}")
    odd = GPT(cfg, generator=np.random.default_rng(0))
    expect_error(lambda: DistributedDataParallel(odd, comm), ValueError, "different config")
    results.append({"check": "config mismatch", "message": msg})

    # a global batch that does not divide by the world size
    batch = {"idx": np.zeros((size + 1, SEQ), np.int64), "targets": np.zeros((size + 1, SEQ), np.int64)}
    msg = expect_error(lambda: shard_batch(batch, rank, size), ValueError, "not divisible by the world size")
    results.append({"check": "non-divisible batch", "message": msg})

    # a second synchronising backward before finish() is an error, not a silent double reduction
    ddp = DistributedDataParallel(gpt_model(), comm, overlap=True)
    b = next(gpt_batches())
    local = shard_batch(b, rank, size)
    ddp(local["idx"], local["targets"])[1].backward()
    msg = expect_error(lambda: ddp(local["idx"], local["targets"])[1].backward(), RuntimeError, "no_sync")
    ddp.finish()                               # complete the reductions the first backward started
    results.append({"check": "second backward before finish", "message": msg})

    mpi_common.report_all(comm, results)


if __name__ == "__main__":
    mpi_common.run(main)
