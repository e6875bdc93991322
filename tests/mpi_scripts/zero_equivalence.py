"""Run under `mpirun -n 2 python tests/mpi_scripts/zero_equivalence.py`: ZeRO-1 changes no number, only memory.

For a tiny GPT and a tiny BERT (masked LM), with the Trainer's recipe
(param_groups_for_weight_decay groups, a WarmupCosine schedule, clipping at a
norm the gradients exceed, gradient accumulation 2 through ddp.no_sync()):
  * DDP + ZeroRedundancyOptimizer(AdamW) reproduces DDP + AdamW bit for bit
    (losses and weights exactly equal: each parameter gets the same AdamW
    arithmetic on the same averaged gradient, only on another rank), and one
    process alone to 1e-5 (float32 sums in another order, as for DDP);
  * each rank holds about half of the Adam moments, and the ranks' bytes add
    up exactly to the unsharded AdamW's;
  * state_dict() (collective) equals plain AdamW's state_dict(); through the
    checkpoint's flat form, a fresh ZeRO optimizer and a plain AdamW loaded
    from it continue exactly as the run that never stopped.
Then the corner cases: a rank that owns no parameter (one-parameter model),
groups that are empty on a rank, a parameter without gradient, a layout that
differs between ranks (an error on every rank), add_param_group after
construction.

Rank 0 prints one line per check, "ok <json>", and the last line "ALL OK";
any failure aborts every rank (MPI_Abort) with a non-zero status, so the
calling test never hangs in a collective that one rank left.
"""
import json

import numpy as np

from minilm.distributed import DistributedDataParallel, shard_batch, shard_loss_scale, world
from minilm.distributed.zero import ZeroRedundancyOptimizer
from minilm.nn import Parameter
from minilm.optim import (AdamW, WarmupCosine, clip_grad_norm_, flatten_optimizer_state,
                          param_groups_for_weight_decay, unflatten_optimizer_state)

import mpi_common
from mpi_common import bert_loss, bert_model, expect_error, gpt_loss, gpt_model

LOSS_RTOL = 1e-5            # against one process: float32 sums in another order (see ddp_equivalence.py)
WEIGHT_ATOL = 1e-5
STEPS, MORE_STEPS, ACCUM, GLOBAL_BATCH, CLIP, LR, WD = 4, 2, 2, 8, 0.5, 3e-3, 0.1


def gpt_batches(seed=0):
    return mpi_common.gpt_batches(GLOBAL_BATCH // ACCUM, seed=seed)


def bert_batches(seed=1):
    return mpi_common.bert_batches(GLOBAL_BATCH // ACCUM, seed=seed)


def make_optimizer(model, comm, zero, lr=LR, bucket_mb=None):
    groups = param_groups_for_weight_decay(model.named_parameters(), WD)
    if zero:
        return ZeroRedundancyOptimizer(groups, comm, optimizer_class=AdamW, lr=lr, betas=(0.9, 0.95),
                                       allgather_bucket_mb=bucket_mb)
    return AdamW(groups, lr=lr, betas=(0.9, 0.95))


def train(comm, model, opt, batches, loss_fn, steps, sched=None, ddp=None):
    """`steps` optimizer steps; comm=None: one process on the whole global batch, else DDP on a shard."""
    losses, norms = [], []
    for _ in range(steps):
        total = 0.0
        for micro in range(ACCUM):
            batch = next(batches)
            scale = 1.0 / ACCUM
            if ddp is None:
                loss, _ = loss_fn(model, batch)
                (loss * scale).backward()
                total += loss.item() * scale
                continue
            rank, size = comm.Get_rank(), comm.Get_size()
            local = shard_batch(batch, rank, size)
            loss, n_local = loss_fn(ddp, local)
            if n_local is not None:
                scale *= shard_loss_scale(n_local, int((batch["labels"] != -100).sum()), size)
            if micro < ACCUM - 1:
                with ddp.no_sync():
                    (loss * scale).backward()
            else:
                (loss * scale).backward()
            total += comm.allreduce(loss.item() * scale) / size
        if ddp is not None:
            ddp.finish()
        norms.append(clip_grad_norm_(model.parameters(), CLIP))
        if sched is not None:
            sched.step()
        opt.step()
        opt.zero_grad()
        losses.append(total)
    return losses, norms


def weights(model):
    return [p.data.copy() for p in model.parameters()]


def assert_states_equal(a, b, what):
    assert a["param_groups"] == b["param_groups"], \
        f"{what}: param_groups differ:\n{a['param_groups']}\n{b['param_groups']}"
    assert sorted(a["state"]) == sorted(b["state"]), f"{what}: state indices differ"
    for i in a["state"]:
        assert sorted(a["state"][i]) == sorted(b["state"][i]), f"{what}: state keys of parameter {i} differ"
        for k, v in a["state"][i].items():
            w = b["state"][i][k]
            if isinstance(v, np.ndarray):
                assert v.dtype == w.dtype and v.shape == w.shape and np.array_equal(v, w), \
                    f"{what}: state {k} of parameter {i} differs"
            else:
                assert v == w and type(v) is type(w), f"{what}: state {k} of parameter {i}: {v!r} != {w!r}"


def compare(comm, name, make_model, make_batches, loss_fn, bucket_mb=None):
    """bucket_mb: the all-gather's buffer (None: the default, one round for these models)."""
    rank, size = comm.Get_rank(), comm.Get_size()
    # one process alone (every rank computes it), DDP + AdamW, DDP + ZeRO-1 AdamW: same groups and schedule
    runs = {}
    for kind in ("alone", "ddp", "zero"):
        model = make_model()
        ddp = None if kind == "alone" else DistributedDataParallel(model, comm, bucket_cap_mb=8 * 1024 / 2 ** 20)
        opt = make_optimizer(model, comm, zero=(kind == "zero"), bucket_mb=bucket_mb)
        sched = WarmupCosine(opt, warmup_steps=2, max_steps=STEPS + MORE_STEPS)
        losses, norms = train(comm, model, opt, make_batches(), loss_fn, STEPS, sched, ddp)
        runs[kind] = dict(model=model, ddp=ddp, opt=opt, sched=sched, losses=losses, norms=norms)
    alone, ddp, zero = runs["alone"], runs["ddp"], runs["zero"]
    assert min(alone["norms"]) > CLIP, f"{name}: clipping never acted (norms {alone['norms']})"
    assert [g["lr"] for g in zero["opt"].param_groups] == [g["lr"] for g in ddp["opt"].param_groups]
    assert zero["opt"].param_groups[0]["lr"] != LR, "the schedule should have moved the rate off its base"

    # (1) bit for bit against DDP + AdamW; to 1e-5 against one process
    assert zero["losses"] == ddp["losses"], f"{name}: losses {zero['losses']} != {ddp['losses']}"
    assert zero["norms"] == ddp["norms"], f"{name}: clipped norms differ"
    for (pname, p), q in zip(zero["model"].named_parameters(), ddp["model"].parameters()):
        assert np.array_equal(p.data, q.data), f"{name}: weight {pname} differs from DDP + AdamW by " \
                                               f"{np.max(np.abs(p.data - q.data))}"
    np.testing.assert_allclose(zero["losses"], alone["losses"], rtol=LOSS_RTOL, err_msg=f"{name}: losses")
    worst = 0.0
    for (pname, p), q in zip(zero["model"].named_parameters(), alone["model"].parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=0, atol=WEIGHT_ATOL, err_msg=f"{name}: weight {pname}")
        worst = max(worst, float(np.max(np.abs(p.data - q.data))))
    digests = comm.allgather(b"".join(p.data.tobytes() for p in zero["model"].parameters()))
    assert all(d == digests[0] for d in digests), f"{name}: the ranks' weights diverged"

    # (2) memory: about 1/N of the moments here, the sum exactly the unsharded AdamW's
    local, full = zero["opt"].local_state_nbytes(), zero["opt"].full_state_nbytes()
    plain = sum(v.nbytes for s in ddp["opt"].state.values() for v in s.values() if hasattr(v, "nbytes"))
    all_local = comm.allgather(local)
    assert sum(all_local) == full == plain, f"{name}: local bytes {all_local}, full {full}, plain AdamW {plain}"
    largest = max(p.data.nbytes for p in zero["model"].parameters())
    assert abs(local - full / size) <= 2 * largest, f"{name}: rank {rank} holds {local} of {full} bytes"
    assert 0 < local < full

    # (3) state_dict (collective) = plain AdamW's; resume through the checkpoint's flat form
    sd_zero, sd_plain = zero["opt"].state_dict(), ddp["opt"].state_dict()
    assert_states_equal(sd_zero, sd_plain, f"{name}: ZeRO state_dict vs AdamW state_dict")
    tensors, meta = flatten_optimizer_state(sd_zero)
    json.dumps(meta)                                                     # the checkpoint's JSON part
    saved = unflatten_optimizer_state({k: v.copy() for k, v in tensors.items()}, meta)
    saved_weights = weights(zero["model"])
    resumed = {}
    for kind in ("zero-fresh", "plain-from-zero"):
        model = make_model()
        for p, w in zip(model.parameters(), saved_weights):
            p.data[...] = w
        dp = DistributedDataParallel(model, comm, bucket_cap_mb=8 * 1024 / 2 ** 20)
        opt = make_optimizer(model, comm, zero=(kind == "zero-fresh"), lr=1.0)   # the checkpoint sets the lr
        opt.load_state_dict(saved)
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in zero["opt"].param_groups]
        resumed[kind] = (model, opt, dp)
    more = {}
    for kind, (model, opt, dp) in [("zero", (zero["model"], zero["opt"], zero["ddp"])),
                                   ("ddp", (ddp["model"], ddp["opt"], ddp["ddp"])), *resumed.items()]:
        batches = make_batches(seed=7)
        more[kind] = (train(comm, model, opt, batches, loss_fn, MORE_STEPS, None, dp)[0], weights(model))
    for kind in ("ddp", "zero-fresh", "plain-from-zero"):
        assert more[kind][0] == more["zero"][0], f"{name}: {kind} continued with other losses"
        for a, b in zip(more[kind][1], more["zero"][1]):
            assert np.array_equal(a, b), f"{name}: {kind} continued to other weights"
    assert_states_equal(resumed["zero-fresh"][1].state_dict(), resumed["plain-from-zero"][1].state_dict(),
                        f"{name}: after resuming")

    loss_err = max(abs(a - b) / abs(b) for a, b in zip(zero["losses"], alone["losses"]))
    return {"check": name, "identical_to_ddp_adamw": True,          # asserted above, bit for bit
            "partition": zero["opt"].partition, "local_state_nbytes": all_local,
            "allgather_rounds": zero["opt"].allgather_rounds,
            "full_state_nbytes": full, "max_loss_rel_err_vs_one_process": loss_err,
            "max_weight_abs_err_vs_one_process": worst, "losses": zero["losses"], "ref_norms": alone["norms"]}


def toy_params(shapes, seed=3):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(np.float32)) for s in shapes]


def toy_steps(opt, params, grads_seed, steps, sched=None, skip=()):
    """Same made-up gradients on every rank (as DDP would leave them); parameters in `skip` get none."""
    rng = np.random.default_rng(grads_seed)
    for _ in range(steps):
        for i, p in enumerate(params):
            g = rng.standard_normal(p.data.shape).astype(np.float32)
            p.grad = None if i in skip else g
        if sched is not None:
            sched.step()
        opt.step()
        opt.zero_grad()


def uneven(comm, name, shapes, groups_of, skip=()):
    """ZeRO vs plain AdamW on made-up parameters whose partition leaves ranks (or groups) empty.

    groups_of: [(parameter indices, weight_decay)] per group; skip: global indices that get no gradient.
    """
    def build(kind, params, lr=0.1):
        groups = [{"params": [params[i] for i in idx], "weight_decay": wd} for idx, wd in groups_of]
        if kind == "zero":
            return ZeroRedundancyOptimizer(groups, comm, optimizer_class=AdamW, lr=lr,
                                           allgather_bucket_mb=64 / 2 ** 20)     # rounds of 8 floats per rank
        return AdamW(groups, lr=lr)

    runs = {}
    for kind in ("zero", "plain"):
        params = toy_params(shapes)
        opt = build(kind, params)
        sched = WarmupCosine(opt, warmup_steps=1, max_steps=5)
        toy_steps(opt, [params[i] for idx, _ in groups_of for i in idx], 5, 3, sched,
                  skip=[k for k, i in enumerate(i for idx, _ in groups_of for i in idx) if i in skip])
        runs[kind] = (params, opt)
    (pz, oz), (pp, op) = runs["zero"], runs["plain"]
    start = toy_params(shapes)
    for i, (a, b) in enumerate(zip(pz, pp)):
        assert np.array_equal(a.data, b.data), f"{name}: parameter {i} differs from plain AdamW"
        assert (i in skip) == np.array_equal(a.data, start[i].data), f"{name}: parameter {i} moved wrongly"
    assert_states_equal(oz.state_dict(), op.state_dict(), f"{name}: state_dict")
    fresh = build("zero", pz, lr=0.5)
    fresh.load_state_dict(op.state_dict())
    assert_states_equal(fresh.state_dict(), op.state_dict(), f"{name}: after load_state_dict")
    counts = comm.allgather(oz.local_state_nbytes())
    assert sum(counts) == oz.full_state_nbytes()
    return [{"check": name, "partition": oz.partition, "local_state_nbytes": counts,
             "allgather_rounds": oz.allgather_rounds,
             "repr": repr(oz), "inner_is_none": comm.allgather(oz.optim is None)}]


def main():
    comm = world()
    rank, size = comm.Get_rank(), comm.Get_size()
    if size != 2:
        raise SystemExit(f"zero_equivalence: started as {size} ranks; run it with `mpirun -n 2` (if you did, the "
                         f"mpirun on PATH belongs to a different MPI library than mpi4py's)")
    # GPT: a 16 KB all-gather buffer, so the weights come in many rounds that split parameters
    results = [compare(comm, "gpt", gpt_model, gpt_batches, gpt_loss, bucket_mb=16 / 1024),
               compare(comm, "bert-mlm", bert_model, bert_batches, bert_loss)]
    assert results[0]["allgather_rounds"] > 5 and results[1]["allgather_rounds"] == 1, results

    # (4) one parameter: rank 0 owns nothing (no inner optimizer at all), rank 1 owns it
    r = uneven(comm, "one parameter", [(7,)], [([0], 0.1)])
    assert r[0]["partition"] == [(0, 0), (0, 1)] and r[0]["inner_is_none"] == [True, False], r
    assert r[0]["local_state_nbytes"] == [0, 2 * 7 * 4], r
    assert "owns no parameters" in comm.bcast(r[0]["repr"], root=0)
    results += r
    # each rank owns one whole group and nothing of the other; the second group has a parameter
    # that never gets a gradient (skipped by its owner, unchanged everywhere)
    r = uneven(comm, "a group empty on each rank", [(40, 10), (3,), (5,), (390,)], [([0], 0.1), ([1, 2, 3], 0.0)],
               skip=(2,))
    assert r[0]["partition"] == [(0, 1), (1, 4)] and r[0]["allgather_rounds"] == 50, r      # 400 / 8
    results += r
    # more ranks' worth of groups than parameters: an empty group in the middle
    r = uneven(comm, "an empty group", [(30,), (30,)], [([0], 0.1), ([], 0.0), ([1], 0.0)])
    assert r[0]["partition"] == [(0, 1), (1, 2)], r
    results += r

    # (5) a layout that differs between ranks: every rank raises, naming rank 1
    shapes = [(4, 4), (4,)] if rank == 0 else [(4, 5), (4,)]
    msg = expect_error(lambda: ZeroRedundancyOptimizer(toy_params(shapes), comm, lr=0.1), ValueError,
                       f"ranks {list(range(1, size))} have a different ZeroRedundancyOptimizer layout")
    results.append({"check": "layout mismatch", "message": msg})
    msg = expect_error(lambda: ZeroRedundancyOptimizer(toy_params([(3,)]), comm, lr=0.1 if rank == 0 else 0.2),
                       ValueError, "ranks [1] have a different ZeroRedundancyOptimizer layout")
    results.append({"check": "hyperparameter mismatch", "message": msg})
    opt = ZeroRedundancyOptimizer(toy_params([(3,)]), comm, lr=0.1)
    msg = expect_error(lambda: opt.add_param_group({"params": toy_params([(2,)])}), RuntimeError,
                       "fixed at construction")
    msg2 = expect_error(lambda: opt.load_state_dict({"state": {5: {"step": 1}}, "param_groups": opt.state_dict()
                                                     ["param_groups"]}), ValueError, "parameter index 5")
    results.append({"check": "clear errors", "message": msg, "load_message": msg2})

    mpi_common.report_all(comm, results)


if __name__ == "__main__":
    mpi_common.run(main)
