"""Data parallelism: every rank holds the whole model, trains on its shard, and averages gradients.

With N ranks and a global batch of B examples, rank r computes the gradient
g_r of the mean loss over its B/N examples. For a loss that is a mean over
equally many terms per example, the full batch's gradient is the average

    g = (g_0 + g_1 + ... + g_{N-1}) / N,

which one MPI all-reduce (SUM) followed by a division gives every rank. All
ranks then take the same optimizer step from the same weights, so the
replicas stay identical without ever sending weights again (Li et al. 2020,
"PyTorch Distributed", VLDB; Goyal et al. 2017 for the large-batch view).

Overlap. Gradients are grouped into buckets (minilm.distributed.buckets),
last layers first. A post-accumulate hook on every parameter copies its
gradient into its bucket as soon as backward has finished it; when a bucket
is full a non-blocking MPI Iallreduce starts on it while backward goes on
through the earlier layers. The first step's buckets follow the reverse of
the parameters' registration; after it they are regrouped in the order
backward actually produced the gradients (as PyTorch's DDP does). finish()
waits for the outstanding reductions before the optimizer step. Buckets are always started in the same order
(0, 1, 2, ...) on every rank, because MPI matches collectives by their order.
Without an asynchronous progress thread, MPICH moves a non-blocking
reduction forward only inside MPI calls, so the hooks also poke the
outstanding requests (Testall) each time a gradient arrives.

Clipping. After finish() every rank holds the same averaged gradient, the
full global batch's gradient, so its global L2 norm is simply
minilm.optim.clip_grad_norm_ on the local copy: no extra communication,
and every rank computes the same norm and the same scale.

Gradient accumulation. Inside `with ddp.no_sync():` the hooks do nothing and
gradients only add up locally; the last micro-step runs outside no_sync and
its backward starts the reductions of the accumulated sums (one reduction
per optimizer step instead of one per micro-step).

Losses that are means over a varying number of tokens (masked language
modelling: only masked positions count) are not plain averages of the ranks'
means; scale each rank's loss with shard_loss_scale so they are.

Backends. Who sums a bucket is a small "reducer" with three operations:
start(buffer) -> handle, wait(handles), and a blocking sum(buffer).
MpiReducer (below) keeps float32 buffers on the host and uses MPI
Iallreduce/Waitall/Allreduce; a CuPy gradient goes through the host.
NcclReducer (minilm.distributed.nccl) keeps the buffers on the GPU and
enqueues NCCL allReduce calls on a side stream, so the averaged gradient
never leaves the device. backend="auto" takes NCCL when the parameters are
CuPy arrays and CuPy has NCCL, and MPI otherwise (always on the CPU).
"""
import time
from contextlib import contextmanager

import numpy as np

from minilm.backend import array_module, is_cupy
from minilm.distributed import comm as _comm
from minilm.distributed.buckets import bucket_parameters

BACKENDS = ("auto", "mpi", "nccl")


def choose_backend(backend, arrays):
    """"mpi" or "nccl" for parameters with these data arrays; a clear error when `backend` cannot work.

    "mpi": host buffers and MPI (any parameters). "nccl": GPU buffers and
    NCCL; every parameter must be a CuPy array and CuPy must have NCCL.
    "auto": "nccl" when both hold, else "mpi".
    """
    if backend not in BACKENDS:
        raise ValueError(f"DistributedDataParallel: unknown backend {backend!r}; choose one of {BACKENDS} "
                         f"('mpi' reduces on the host over MPI, 'nccl' on the GPU, 'auto' picks)")
    if backend == "mpi":
        return "mpi"
    on_gpu = bool(arrays) and all(is_cupy(a) for a in arrays)
    if backend == "auto" and not on_gpu:
        return "mpi"
    if not on_gpu:
        where = sorted({"cuda" if is_cupy(a) else "cpu" for a in arrays})
        raise ValueError(f"DistributedDataParallel(backend='nccl'): NCCL reduces gradients that live on a GPU, "
                         f"but the model's parameters are on {' and '.join(where) or 'no device (none require grad)'}; "
                         f"move the model first (minilm.distributed.nccl.select_device(comm), then model.to('cuda')) "
                         f"or use backend='mpi' for a model on the CPU")
    from minilm.distributed import nccl
    problem = nccl.unavailable_reason()
    if problem is None:
        return "nccl"
    if backend == "auto":
        return "mpi"
    raise RuntimeError(f"DistributedDataParallel(backend='nccl'): {problem}; or use backend='mpi' "
                       f"(gradients then travel through the host)")


def _agree_on_backend(backend, arrays, comm):
    """choose_backend on every rank, then one allgather: every rank raises together, or all use one backend."""
    try:
        mine, problem = choose_backend(backend, arrays), None
    except (ValueError, RuntimeError) as err:
        mine, problem = None, err
    everyone = comm.allgather((mine, None if problem is None else str(problem)))
    if problem is not None:
        raise problem
    for rank, (_, message) in enumerate(everyone):
        if message is not None:
            raise RuntimeError(f"DistributedDataParallel: rank {rank} cannot use backend {backend!r}: {message}")
    chosen = sorted({name for name, _ in everyone})
    if len(chosen) > 1:
        raise RuntimeError(f"DistributedDataParallel(backend={backend!r}): the ranks chose different backends "
                           f"{chosen} (some have CuPy parameters or NCCL, some not); give every rank the same "
                           f"set-up, or pass backend='mpi' or backend='nccl' explicitly")
    return mine


class MpiReducer:
    """Sums float32 host (NumPy) bucket buffers across ranks with MPI, in place.

    start(buffer) -> handle (Iallreduce), progress(handles) (Testall: MPICH
    moves a non-blocking reduction only inside MPI calls), wait(handles)
    (Waitall), sum(buffer) (a blocking Allreduce).
    """
    name = "mpi"
    xp = np

    def __init__(self, comm):
        self.comm = comm

    def local(self, grad):
        """A gradient as the host bucket takes it (a CuPy gradient is copied to the host)."""
        return grad.get() if hasattr(grad, "get") else grad

    def start(self, buffer):
        MPI = _comm.mpi()
        return self.comm.Iallreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)

    def progress(self, handles):
        if handles:
            _comm.mpi().Request.Testall(handles)

    def wait(self, handles):
        _comm.mpi().Request.Waitall(handles)

    def sum(self, buffer):
        MPI = _comm.mpi()
        self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)


class DistributedDataParallel:
    """DistributedDataParallel(model, comm, bucket_cap_mb=25.0, overlap=True, broadcast=True, config=None,
                               backend="auto").

    model       a Module; every rank must build the same one
    comm        an mpi4py communicator (minilm.distributed.world() for all ranks)
    overlap     True: reduce buckets during backward (Iallreduce); False: one
                blocking Allreduce per bucket in finish(), after backward
    broadcast   copy rank 0's weights to every rank first (same start)
    config      compared across ranks by sha256 (default: model.config when it
                has to_dict()); a mismatch raises ValueError on every rank
    backend     "mpi" (host buffers, MPI), "nccl" (GPU buffers, NCCL; the
                parameters must be CuPy arrays, see minilm.distributed.nccl),
                or "auto": "nccl" for CuPy parameters when NCCL is usable,
                else "mpi". The choice is in .backend

    Use per optimizer step:
        for micro in micro_batches[:-1]:
            with ddp.no_sync():
                (loss_of(micro) / accum).backward()
        (loss_of(micro_batches[-1]) / accum).backward()
        ddp.finish()                       # grads are now the global average
        clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step(); optimizer.zero_grad()

    A parameter that got no gradient on a rank (unused in its forward)
    contributes zeros; if it was unused on every rank its .grad becomes zeros
    rather than None (AdamW then still decays it), as in PyTorch's DDP with
    find_unused_parameters=True.
    """

    def __init__(self, model, comm, bucket_cap_mb=25.0, overlap=True, broadcast=True, config=None, backend="auto"):
        self.module, self.comm, self.overlap = model, comm, bool(overlap)
        self.world_size, self.rank = comm.Get_size(), comm.Get_rank()
        self.backend = _agree_on_backend(backend, [p.data for p in model.parameters() if p.requires_grad], comm)
        if config is None and hasattr(getattr(model, "config", None), "to_dict"):
            config = model.config
        if config is not None:
            _comm.check_same_config(config, comm)
        if broadcast:
            _comm.broadcast_parameters(model, comm)        # also checks the parameter layout
        else:
            _comm.check_same_config({"parameters": _comm.parameter_layout(model)}, comm,
                                    what="parameter layout (names, shapes, dtypes)")
        self.params = [p for p in model.parameters() if p.requires_grad]
        if self.backend == "nccl":
            from minilm.distributed import nccl
            self._reducer = nccl.NcclReducer(comm, nccl.parameter_device([p.data for p in self.params]))
        else:
            self._reducer = MpiReducer(comm)
        self.bucket_cap_mb = bucket_cap_mb
        self._set_buckets(self.params)
        self._arrival = []             # parameter indices in the order the first backward finished them
        self._index = {id(p): i for i, p in enumerate(self.params)}
        self._rebuilt = not self.overlap
        self._handles = ([p.register_post_accumulate_grad_hook(self._on_grad_ready) for p in self.params]
                         if self.overlap else [])
        self._sync = True
        self.last_wait_s = 0.0        # seconds finish() spent waiting for / doing reductions (last step)
        self._reset()

    # ----- what a training loop uses -------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def parameters(self):
        return self.module.parameters()

    @property
    def bytes_per_step(self):
        """Bytes all-reduced per optimizer step (each rank's contribution, float32 buckets)."""
        return sum(b.nbytes for b in self.buckets)

    @property
    def buckets_started(self):
        """How many buckets' reductions have been started since the last finish() (overlap=True)."""
        return self._next

    @property
    def grads_pending_at_start(self):
        """For each bucket started since the last finish(): how many parameters' gradients backward had
        still to produce when its reduction began (> 0: it overlapped with backward)."""
        return list(self._pending_at_start)

    @contextmanager
    def no_sync(self):
        """Backward passes inside only accumulate local gradients (accumulation micro-steps)."""
        if self._copied:
            raise RuntimeError("DistributedDataParallel.no_sync: a synchronising backward already ran since "
                               "the last finish(); call finish() first, or run the no_sync micro-steps first "
                               "and the synchronising one last")
        previous, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = previous

    def finish(self):
        """Wait for every bucket's reduction and write the averaged gradients into p.grad.

        Call it once per optimizer step, after the last backward, on every
        rank. Buckets whose gradients were not all produced by the backward
        (overlap=False, or unused parameters) are reduced here.
        """
        if not self._sync:
            raise RuntimeError("DistributedDataParallel.finish: called inside no_sync(); leave no_sync for "
                               "the last micro-step, whose backward starts the reductions")
        start = time.perf_counter()
        for bucket in self.buckets:
            for j, p in enumerate(bucket.params):
                if id(p) not in self._copied:
                    self._copy(bucket, j, p)
        if self.overlap:
            self._launch_ready()
            self._reducer.wait([r for r in self._requests if r is not None])
        else:
            for bucket in self.buckets:
                self._reducer.sum(bucket.buffer)
        inv = 1.0 / self.world_size
        for bucket in self.buckets:
            bucket.buffer *= np.float32(inv)
            for p, offset in zip(bucket.params, bucket.offsets):
                flat = bucket.buffer[offset:offset + p.data.size]
                grad = flat.reshape(p.shape).astype(p.data.dtype, copy=True)
                p.grad = grad if p.device == "cpu" else array_module(p.data).asarray(grad)
        self.last_wait_s = time.perf_counter() - start
        self._reset()
        if not self._rebuilt:
            self._rebuild_buckets()

    wait = finish

    def remove_hooks(self):
        """Unregister the gradient hooks (the model trains alone again)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # ----- the machinery -----------------------------------------------------------------
    def _set_buckets(self, params_in_registration_order):
        self.buckets = bucket_parameters(params_in_registration_order, self.bucket_cap_mb, xp=self._reducer.xp)
        self._where = {}
        for bucket in self.buckets:
            for j, p in enumerate(bucket.params):
                self._where[id(p)] = (bucket, j)

    def _rebuild_buckets(self):
        """After the first step, regroup the buckets in the order backward really finished the gradients.

        Registration order is only a guess at the reverse of backward's order: a
        block that registers its LayerNorms before its attention puts a norm of
        the first layer it runs into the first bucket, which then waits for
        nearly the whole block. PyTorch's DDP rebuilds its buckets after the
        first iteration for the same reason. Rank 0's order is broadcast, so
        every rank lays out (and starts) the same buckets. Parameters that got
        no gradient go last.
        """
        self._rebuilt = True
        order = self.comm.bcast(self._arrival, root=0)
        seen = set(order)
        order += [i for i in range(len(self.params)) if i not in seen]
        # bucket_parameters takes registration order and fills from the end: hand it the reverse
        self._set_buckets([self.params[i] for i in reversed(order)])
        self._reset()

    def _reset(self):
        self._copied = set()
        self._missing = [len(b.params) for b in self.buckets]
        self._requests = [None] * len(self.buckets)
        self._next = 0                 # the next bucket to start; buckets start in order on every rank
        self._pending_at_start = []

    def _copy(self, bucket, j, p):
        if p.data.dtype.kind != "f":
            raise TypeError(f"DistributedDataParallel: parameter of shape {p.shape} has dtype {p.data.dtype}")
        view = bucket.buffer[bucket.offsets[j]:bucket.offsets[j] + p.data.size]
        if p.grad is None:
            view[:] = 0.0
        else:
            view[:] = self._reducer.local(p.grad).reshape(-1)     # MPI: a CuPy grad goes through the host
        self._copied.add(id(p))
        self._missing[bucket.index] -= 1

    def _on_grad_ready(self, p):
        """The post-accumulate hook: p.grad is final for this backward."""
        if not self._sync:
            return
        if id(p) in self._copied:
            raise RuntimeError("DistributedDataParallel: a second backward() reached a parameter before "
                               "finish(); for gradient accumulation run the earlier micro-steps inside "
                               "`with ddp.no_sync():` and call finish() once per optimizer step")
        if not self._rebuilt:
            self._arrival.append(self._index[id(p)])
        bucket, j = self._where[id(p)]
        self._copy(bucket, j, p)
        if self._missing[bucket.index] == 0:
            self._launch_ready()
        self._reducer.progress([r for r in self._requests[:self._next] if r is not None])

    def _launch_ready(self):
        while self._next < len(self.buckets) and self._missing[self._next] == 0:
            bucket = self.buckets[self._next]
            self._requests[self._next] = self._reducer.start(bucket.buffer)
            self._pending_at_start.append(sum(self._missing))
            self._next += 1


def shard_batch(batch, rank, world_size):
    """Rank `rank`'s contiguous 1/world_size of a global batch (arrays split along the first axis).

    batch: an array, or a tuple/list/dict of arrays that share the batch size B.
    B must divide by world_size, so every rank's mean loss counts equally.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"shard_batch: rank {rank} is outside 0..{world_size - 1}")
    arrays = (list(batch.values()) if isinstance(batch, dict)
              else list(batch) if isinstance(batch, (tuple, list)) else [batch])
    sizes = {len(a) for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"shard_batch: the arrays of a batch must share the batch size, got sizes {sorted(sizes)}")
    size = sizes.pop()
    if size % world_size != 0:
        raise ValueError(f"shard_batch: the global batch size {size} is not divisible by the world size "
                         f"{world_size}; use a batch size that is a multiple of {world_size} (e.g. "
                         f"{max(world_size, size - size % world_size)}) or a different number of ranks")
    per = size // world_size
    part = lambda a: np.ascontiguousarray(a[rank * per:(rank + 1) * per])  # noqa: E731
    if isinstance(batch, dict):
        return {k: part(v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(part(a) for a in batch)
    return part(batch)


def shard_loss_scale(local_count, global_count, world_size):
    """The factor for a rank's mean loss when the counted terms differ between shards.

    A loss that is a mean over the counted tokens of its shard (masked LM:
    only masked positions) has mean_r = sum_r / n_r. DDP averages gradients
    over ranks, so scaling each rank's mean by N * n_r / n gives
    (1/N) * sum_r (N n_r / n)(sum_r / n_r) = (sum over all) / n: the global
    batch's mean, as one process would compute it. n (global_count) is known
    on every rank when every rank reads the same global batch.
    """
    if global_count <= 0:
        raise ValueError(f"shard_loss_scale: the global batch counts {global_count} tokens; nothing to average")
    return world_size * float(local_count) / float(global_count)
