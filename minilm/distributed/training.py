"""What the Trainer needs to train on one process or on N MPI ranks, behind one interface.

The Trainer's step reads the same either way:

    for each micro-batch:   local = run.shard(batch)                  # the whole batch, or this rank's part
                            scale = run.loss_scale(objective, local, batch)
                            with run.backward_context(last=...):      # no all-reduce until the last one
                                (loss * scale / grad_accum).backward()
    run.finish()                                                      # averaged gradients in p.grad
    loss, tokens = run.reduce_step(loss, tokens)                      # the global batch's numbers

`OneProcess` does nothing at each of these points. `DataParallel` is
data parallelism over MPI: every rank holds the whole model, draws the same
global batch (same seed, so the same data order everywhere) and keeps its
contiguous 1/N of it; DistributedDataParallel averages the gradients in
buckets while backward runs. Because the averaged gradient is then the same
on every rank, clipping its norm on one rank clips the global batch's norm,
and the optimizer steps agree without further talk.

Rank 0 alone writes (the run folder's lock, checkpoints, metrics, the
progress bar) and evaluates; `on_main` runs such a job on rank 0 and makes
every rank return or raise together, so a failure on rank 0 (a folder that
is not empty, a full disk) is an error on every rank instead of a hang in
the next collective.
"""
import contextlib
import io
import os

import numpy as np

from minilm.distributed import comm as _comm


class PeerError(RuntimeError):
    """Raised on ranks 1..N-1 when the job rank 0 ran for everyone failed; rank 0 raises the original."""


class LaunchError(RuntimeError):
    """mpirun started several ranks, but they cannot talk (no mpi4py, or a different MPI)."""


def on_main(comm, job, what):
    """Run job() on rank 0 only (or just run it without comm); every rank returns or raises together.

    Returns job()'s result on rank 0 and None elsewhere. Rank 0 re-raises its
    own exception; the others raise PeerError naming `what` and rank 0's message.
    """
    if comm is None or comm.Get_size() == 1:
        return job()
    rank = comm.Get_rank()
    error = result = None
    if rank == 0:
        try:
            result = job()
        except Exception as err:               # reported to every rank below, then re-raised
            error = err
    message = comm.bcast(None if error is None else f"{type(error).__name__}: {error}", root=0)
    if error is not None:
        raise error
    if message is not None:
        raise PeerError(f"rank {rank}: stopped because rank 0 could not {what}: {message}")
    return result


def discard_stream():
    """A text stream that drops what is written (the progress bar of ranks other than 0)."""
    return _Discard()


class _Discard(io.TextIOBase):
    def write(self, text):
        return len(text)


class OneProcess:
    """Training in one process: every hook of the interface is the identity."""
    rank, world_size, is_main = 0, 1, True

    def shard(self, batch):
        return batch

    def loss_scale(self, objective, local_batch, global_batch):
        return 1.0

    def backward_context(self, last):
        return contextlib.nullcontext()

    def finish(self):
        pass

    def reduce_step(self, loss, tokens):
        return loss, tokens

    def any(self, flag):
        return bool(flag)

    def on_main(self, job, what):
        return job()

    def barrier(self):
        pass

    def make_optimizer(self, optimizer_class, groups, **hyperparameters):
        return optimizer_class(groups, **hyperparameters)

    def own_dropout_streams(self, generators):
        pass


class DataParallel(OneProcess):
    """DataParallel(model, comm, batch_size, config=None, zero=False, bucket_cap_mb=25.0).

    batch_size: the global batch (per micro-step); it must divide by the number of ranks.
    config: a JSON-able dict every rank must agree on (compared by sha256 before training).
    zero: shard AdamW's moments over the ranks (ZeRO stage 1, minilm.distributed.zero).
    """

    def __init__(self, model, comm, batch_size, config=None, zero=False, bucket_cap_mb=25.0):
        from minilm.distributed.ddp import DistributedDataParallel
        self.comm = comm
        self.rank, self.world_size = comm.Get_rank(), comm.Get_size()
        self.is_main = self.rank == 0
        if batch_size % self.world_size != 0:        # the same on every rank: all of them raise
            raise ValueError(f"data parallel: the batch size {batch_size} is not divisible by the "
                             f"{self.world_size} ranks; each rank takes an equal share of every batch, so use "
                             f"--batch-size {max(self.world_size, batch_size - batch_size % self.world_size)} "
                             f"(or another multiple of {self.world_size}) or a different `mpirun -n`")
        self.zero = bool(zero)
        self.ddp = DistributedDataParallel(model, comm, bucket_cap_mb=bucket_cap_mb, config=config)

    def shard(self, batch):
        from minilm.distributed.ddp import shard_batch
        return shard_batch(batch, self.rank, self.world_size)

    def loss_scale(self, objective, local_batch, global_batch):
        """Weight this rank's mean loss so the average over ranks is the global batch's mean.

        For next-token prediction every shard counts the same number of
        targets and the factor is 1; for masked LM the shards hold different
        numbers of masked tokens (see shard_loss_scale).
        """
        from minilm.distributed.ddp import shard_loss_scale
        return shard_loss_scale(objective.count(local_batch), objective.count(global_batch), self.world_size)

    def backward_context(self, last):
        # Only the last micro-step's backward starts the all-reduces: the earlier ones accumulate locally.
        return contextlib.nullcontext() if last else self.ddp.no_sync()

    def finish(self):
        self.ddp.finish()

    def reduce_step(self, loss, tokens):
        """(global mean loss, global token count) from this rank's scaled mean loss and token count.

        One small all-reduce per step. Every rank gets the same numbers, so a
        non-finite loss stops every rank at the same step.
        """
        MPI = _comm.mpi()
        both = np.array([loss, tokens], dtype=np.float64)
        self.comm.Allreduce(MPI.IN_PLACE, both, op=MPI.SUM)
        return float(both[0]) / self.world_size, int(round(both[1]))

    def any(self, flag):
        """True on every rank if it is True on any (e.g. a Ctrl-C that reached only some ranks)."""
        return bool(self.comm.allreduce(bool(flag), op=_comm.mpi().LOR))

    def on_main(self, job, what):
        return on_main(self.comm, job, what)

    def barrier(self):
        self.comm.Barrier()

    def make_optimizer(self, optimizer_class, groups, **hyperparameters):
        if not self.zero:
            return optimizer_class(groups, **hyperparameters)
        from minilm.distributed.zero import ZeroRedundancyOptimizer
        return ZeroRedundancyOptimizer(groups, self.comm, optimizer_class=optimizer_class, **hyperparameters)

    def own_dropout_streams(self, generators):
        """Give each rank its own dropout stream: rank r jumps its generators r times ahead.

        Every rank seeds the same generators, so without this each shard
        would get the same dropout masks as every other shard (correlated
        noise). A jump moves a PCG64 stream 2^127 draws ahead, so the ranks'
        streams never overlap. Checkpoints hold rank 0's states; a resumed
        run jumps again. (With dropout, N ranks are statistically the same
        as one process, not bit-for-bit: one process draws one mask for the
        whole batch.)
        """
        for gen in generators.values():
            if self.rank and hasattr(gen.bit_generator, "jumped"):
                gen.bit_generator.state = gen.bit_generator.jumped(self.rank).state


def launched_world_size():
    """How many ranks the launcher (mpirun/mpiexec) started, from its environment; 1 if none.

    MPICH's Hydra sets PMI_SIZE, Open MPI sets OMPI_COMM_WORLD_SIZE. Read
    before importing mpi4py, so a plain `minilm train` never loads MPI, and
    `mpirun -n 2 minilm train` without mpi4py is a clear error instead of two
    processes training the same folder, each thinking it is alone.
    """
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def world_from_launcher():
    """MPI.COMM_WORLD when started by mpirun with more than one rank, else None.

    Raises LaunchError naming the fix when the launcher started several
    ranks but mpi4py (or its MPI library) cannot be loaded.
    """
    size = launched_world_size()
    if size <= 1:
        return None
    try:
        world = _comm.world()
    except RuntimeError as err:
        raise LaunchError(f"started by mpirun with {size} ranks, but {err}") from None
    if world.Get_size() != size:
        raise LaunchError(f"the launcher says {size} ranks but MPI sees {world.Get_size()}: mpi4py is linked to "
                           f"a different MPI than the mpirun that started it; use the mpirun of the MPI mpi4py "
                           f"was built with (with the mpich wheel: the mpirun it installs)")
    return world
