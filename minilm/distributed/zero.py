"""ZeRO stage 1: every rank keeps and updates 1/N of the optimizer state, then all ranks share the weights.

Plain data parallelism (ddp.py) keeps a whole replica on every rank: the
weights (4 bytes per parameter in float32), the gradients (4) and AdamW's two
moments, exp_avg and exp_avg_sq (8): 16 bytes per parameter, half of it
optimizer state that every rank updates identically. Rajbhandari et al. 2020,
"ZeRO: Memory Optimizations Toward Training Trillion Parameter Models" (SC20),
remove that redundancy in stages; stage 1 ("P_os") partitions the optimizer
states only:

    per rank:  weights 4 P + gradients 4 P + moments 8 P / N   bytes   (P parameters, N ranks)

Each step, after DDP has written the same averaged gradient into p.grad on
every rank,
  1. rank r runs the inner optimizer (AdamW) on the parameters it owns only,
     with the moments of those parameters only;
  2. the updated weights are all-gathered: rank r contributes its owned slice
     and every rank receives every slice, so all replicas are equal again.
The arithmetic of each parameter's update is the one a single AdamW would do
on the same gradient, so ZeRO-1 reproduces DDP + AdamW bit for bit. The price
is the all-gather: P more weights on the wire per step, on top of DDP's
all-reduce (a ring sends about 2 P per rank, reduce-scatter then all-gather),
so about 1.5 times plain DDP's bytes. The paper's stage 1 sends no more than
plain DDP (sec. 7.2.1): each rank needs only its own parameters' averaged
gradients, so a reduce-scatter (P) replaces the all-reduce. Here DDP still
all-reduces, because clipping by the global norm and the Trainer's checks
read the whole averaged gradient on every rank; a reduce-scatter variant
would need one more all-reduce of a scalar, the squared norm.

The partition. Ranks own CONTIGUOUS ranges of the global parameter index
(group 0's parameters first, as in Optimizer) made of WHOLE parameters,
balanced by element count (`partition_parameters`). Contiguous, so that the
owned slices laid end to end in rank order are exactly the flat concatenation
of all parameters in global order: the all-gather is one MPI Allgatherv with a
count and a displacement per rank (done in rounds of at most
`allgather_bucket_mb`, each again one Allgatherv over the next piece of every
rank's slice), and a rank's owned parameters keep their order, so their
index in the inner optimizer is the global index minus the range's start.
Whole parameters, so the inner optimizer is an ordinary minilm Optimizer over
ordinary parameters (no parameter is split in two halves with two step
counters). The price is balance: a rank's share can miss 1/N of the
elements by up to the largest parameter's size, and with more ranks than
large parameters some ranks own nothing (that works: they only receive).
PyTorch's torch.distributed.optim.ZeroRedundancyOptimizer also keeps whole
parameters, but assigns each group's parameters largest first to the rank
with the fewest elements so far (better balance, not contiguous), and sends
the weights as broadcasts from every rank, parameter by parameter or in
buckets.

Not sharded here: the gradients (ZeRO stage 2) and the weights (stage 3);
every rank still holds and all-reduces the full gradient. The all-gather's
receive buffer is at most `allgather_bucket_mb` (4 MB by default; one buffer
for all the weights, 4 P bytes, would cancel the whole saving on 2 ranks), and
`state_dict()` gathers every moment on every rank (8 P bytes, until the caller
drops it: checkpoints only).

    from minilm.distributed import DistributedDataParallel, world
    from minilm.distributed.zero import ZeroRedundancyOptimizer
    comm = world()
    ddp = DistributedDataParallel(model, comm)
    opt = ZeroRedundancyOptimizer(param_groups_for_weight_decay(model.named_parameters(), 0.1),
                                  comm, optimizer_class=AdamW, lr=3e-4, betas=(0.9, 0.95))
    ... backward; ddp.finish(); clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad()
"""
import numpy as np

from minilm.backend import array_module, is_cupy
from minilm.distributed import comm as _comm
from minilm.optim.adam import AdamW
from minilm.optim.optimizer import Optimizer, _json_value, _to_numpy


def partition_parameters(sizes, world_size):
    """[(start, stop)] per rank: contiguous ranges of parameter indices, whole parameters, balanced by size.

    sizes       element count of each parameter, in global order (ints >= 0)
    world_size  the number of ranks N

    Greedy cuts: the cut between rank r-1 and rank r is put at the parameter
    boundary whose running total of elements is closest to r/N of the total
    (the lower boundary on a tie). The cuts never go backwards, every
    parameter lands on exactly one rank, the ranges cover 0..len(sizes) in
    order, and each rank's element count differs from total/N by at most the
    largest parameter's size (each cut is within half of one parameter of its
    ideal place). A range may be empty (start == stop): that rank owns nothing.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, (int, np.integer)) or world_size < 1:
        raise ValueError(f"partition_parameters: world_size must be an int >= 1, got {world_size!r}")
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes):
        raise ValueError(f"partition_parameters: sizes must be >= 0, got {sizes}")
    prefix = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])    # prefix[k] = elements before param k
    total = int(prefix[-1])
    cuts = [0]
    for r in range(1, world_size):
        ideal = total * r / world_size
        k = int(np.argmin(np.abs(prefix - ideal)))                        # argmin takes the first (lower) tie
        cuts.append(max(k, cuts[-1]))
    cuts.append(len(sizes))
    return [(cuts[r], cuts[r + 1]) for r in range(world_size)]


class ZeroRedundancyOptimizer(Optimizer):
    """ZeroRedundancyOptimizer(params, comm, optimizer_class=AdamW, **defaults): ZeRO-1 around any minilm optimizer.

    params           parameters or groups, as for any minilm Optimizer; every rank
                     must pass the same parameters in the same order (checked: a
                     different layout raises ValueError on every rank, naming them)
    comm             an mpi4py communicator (minilm.distributed.world())
    optimizer_class  the optimizer run on the owned parameters (AdamW, Adam, SGD)
    **defaults       its hyperparameters (lr=..., betas=..., weight_decay=...)
    allgather_bucket_mb  keyword only: the largest receive buffer of the weights'
                     all-gather (default 4 MB); more bytes take several rounds

    `param_groups` holds the FULL groups (every parameter and its
    hyperparameters), so a scheduler that writes group["lr"] (WarmupCosine) and
    code that reads the groups work unchanged; each step copies the groups'
    hyperparameters into the inner optimizer `optim`, which holds only this
    rank's parameters (`optim` is None on a rank that owns none).

    Collective (every rank must call it, in the same order): the constructor,
    step(), state_dict(), full_state_nbytes(). Local: zero_grad(),
    load_state_dict(), local_state_nbytes().

    `step()` expects p.grad to be the same on every rank (DDP's averaged
    gradient): only the owner uses a parameter's gradient.
    """

    allgather_bucket_mb = 4.0     # the all-gather's receive buffer, 1 MB = 2**20 bytes (see _allgather_weights)

    def __init__(self, params, comm, optimizer_class=AdamW, *, allgather_bucket_mb=None, **defaults):
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
            raise TypeError(f"ZeroRedundancyOptimizer: optimizer_class must be a minilm Optimizer subclass "
                            f"(AdamW, Adam, SGD), got {optimizer_class!r}")
        if allgather_bucket_mb is not None:
            if isinstance(allgather_bucket_mb, bool) or not isinstance(allgather_bucket_mb, (int, float)) \
                    or not allgather_bucket_mb > 0:
                raise ValueError(f"ZeroRedundancyOptimizer: allgather_bucket_mb must be a positive number, "
                                 f"got {allgather_bucket_mb!r}")
            self.allgather_bucket_mb = float(allgather_bucket_mb)
        self._constructing = True
        # one throw-away optimizer over everything: it checks the hyperparameters, fills each group's
        # missing ones from optimizer_class's own defaults and reads generators once; it holds no state
        # (Adam's moments are created at the first step)
        probe = optimizer_class(params, **defaults)
        super().__init__([dict(g) for g in probe.param_groups], probe.defaults)
        self._constructing = False
        self.comm, self.optimizer_class = comm, optimizer_class
        self.rank, self.world_size = comm.Get_rank(), comm.Get_size()
        self._params = [p for _, p, _ in self._indexed_params()]
        dtypes = sorted({str(p.data.dtype) for p in self._params})
        _comm.check_same_config(self._layout(), comm,
                                what="ZeroRedundancyOptimizer layout (group sizes, parameter shapes and dtypes, "
                                     "hyperparameters)")
        if len(dtypes) != 1:
            raise TypeError(f"ZeroRedundancyOptimizer: the weights are all-gathered as one flat buffer, so every "
                            f"parameter must have the same dtype; got {dtypes}")
        if np.dtype(dtypes[0]).kind != "f":
            raise TypeError(f"ZeroRedundancyOptimizer: parameters must be floating point, got {dtypes[0]}")
        self.dtype = np.dtype(dtypes[0])
        # frozen parameters hold no optimizer state: they weigh nothing in the balance
        sizes = [int(p.data.size) if getattr(p, "requires_grad", True) else 0 for p in self._params]
        self.partition = partition_parameters(sizes, self.world_size)
        self.start, self.stop = self.partition[self.rank]
        numels = [int(p.data.size) for p in self._params]
        offsets = np.concatenate([[0], np.cumsum(numels, dtype=np.int64)])
        self._offsets = offsets
        self._counts = [int(offsets[b] - offsets[a]) for a, b in self.partition]
        self._displs = [int(offsets[a]) for a, _ in self.partition]
        self.optim = self._build_inner()
        self.allgather_rounds = 0        # Allgatherv calls of the last step (rounds of allgather_bucket_mb)

    # ----- construction --------------------------------------------------------------------
    def add_param_group(self, group):
        if not getattr(self, "_constructing", False):
            raise RuntimeError("ZeroRedundancyOptimizer.add_param_group: the partition of the parameters over "
                               "the ranks is fixed at construction; build a new ZeroRedundancyOptimizer with "
                               "all the groups instead")
        super().add_param_group(group)

    def _layout(self):
        """What every rank must agree on: group sizes, parameter shapes and dtypes, hyperparameters."""
        return {"optimizer": self.optimizer_class.__name__,
                "groups": [{"hyperparameters": {k: _json_value(v) for k, v in g.items() if k != "params"},
                            "parameters": [[list(p.data.shape), str(p.data.dtype)] for p in g["params"]]}
                           for g in self.param_groups]}

    def _owned_groups(self):
        """The groups restricted to this rank's range [start, stop); a group may come out empty."""
        groups, i = [], 0
        for g in self.param_groups:
            owned = g["params"][max(self.start - i, 0):max(self.stop - i, 0)]
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": owned})
            i += len(g["params"])
        return groups

    def _build_inner(self):
        """optimizer_class over the owned parameters only, one inner group per outer group (same order).

        Keeping an (often empty) inner group for every outer group makes the inner
        optimizer's groups line up with the outer ones one to one. A rank that owns
        no parameter at all has no inner optimizer (an Optimizer needs at least one).
        """
        if self.start == self.stop:
            return None
        return self.optimizer_class(self._owned_groups(), **self.defaults)

    # ----- the training-loop API --------------------------------------------------------------
    def step(self):
        """Update the owned parameters with the inner optimizer, then all-gather every weight (collective)."""
        if self.optim is not None:
            for outer, inner in zip(self.param_groups, self.optim.param_groups):
                for k, v in outer.items():            # e.g. the lr WarmupCosine just wrote
                    if k != "params":
                        inner[k] = v
            self.optim.step()
        self._allgather_weights()

    def _allgather_weights(self):
        """Allgatherv of the flat weights in global order, in rounds; every p.data is overwritten in place.

        Round c gathers elements [c K, (c + 1) K) of every rank's owned slice, with
        K = allgather_bucket_mb / N (in elements), so the receive buffer never
        exceeds allgather_bucket_mb: one buffer for all the weights would cost
        4 P bytes during the step, as much as ZeRO saves on 2 ranks (8 P / 2). A
        parameter may be split between rounds; that changes no value, only when
        it arrives. A parameter with grad None was skipped by its owner's
        optimizer; its owner still sends its current value, which every rank
        already has.
        """
        MPI = _comm.mpi()
        n, itemsize = self.world_size, self.dtype.itemsize
        per_rank = max(1, int(self.allgather_bucket_mb * 2 ** 20 / itemsize / n))
        rounds = self.allgather_rounds = -(-max(self._counts) // per_rank)
        buffer = np.empty(min(per_rank * n, int(self._offsets[-1])), dtype=self.dtype)   # freed after the step
        for c in range(rounds):
            counts = [max(0, min(per_rank, count - c * per_rank)) for count in self._counts]
            displs = np.concatenate([[0], np.cumsum(counts)])[:-1].tolist()
            received = buffer[:sum(counts)]
            mine = received[displs[self.rank]:displs[self.rank] + counts[self.rank]]
            self._copy_flat(self._displs[self.rank] + c * per_rank, mine, to_params=False)   # IN_PLACE: my part
            self.comm.Allgatherv(MPI.IN_PLACE, [received, (counts, displs)])
            for r in range(n):
                if r != self.rank and counts[r]:
                    self._copy_flat(self._displs[r] + c * per_rank,
                                    received[displs[r]:displs[r] + counts[r]], to_params=True)

    def _copy_flat(self, start, flat, to_params):
        """Copy between `flat` and elements [start, start + flat.size) of the parameters laid end to end."""
        pos, stop = start, start + flat.size
        i = int(np.searchsorted(self._offsets, start, side="right")) - 1      # the parameter holding `start`
        while pos < stop:
            p_start, p_stop = int(self._offsets[i]), int(self._offsets[i + 1])
            lo, hi = pos - p_start, min(stop, p_stop) - p_start
            if hi > lo:
                data = self._params[i].data
                if not data.flags.c_contiguous:
                    raise ValueError(f"ZeroRedundancyOptimizer: parameter {i} (shape {data.shape}) is not "
                                     f"contiguous in memory, so its weights cannot be written in place")
                piece = flat[pos - start:pos - start + hi - lo]
                if to_params:
                    data.reshape(-1)[lo:hi] = piece if not is_cupy(data) else array_module(data).asarray(piece)
                else:
                    piece[...] = _host(data.reshape(-1)[lo:hi])
            pos = p_start + hi
            i += 1

    # ----- memory ------------------------------------------------------------------------------
    def local_state_nbytes(self):
        """Bytes of the state arrays (Adam's moments) this rank holds; 0 before the first step."""
        if self.optim is None:
            return 0
        return int(sum(v.nbytes for s in self.optim.state.values() for v in s.values() if hasattr(v, "nbytes")))

    def full_state_nbytes(self):
        """What one unsharded optimizer would hold: the sum of every rank's local bytes (collective).

        The ranges partition the parameters, so every parameter's state is held by
        exactly one rank and the sum counts each once.
        """
        return int(self.comm.allreduce(self.local_state_nbytes()))

    # ----- checkpoints ----------------------------------------------------------------------------
    def state_dict(self):
        """The single-process checkpoint format, gathered from every rank: COLLECTIVE, every rank must call it.

        Returns exactly what one optimizer_class over all parameters would return:
        {"state": {global index: {"step": 3, "exp_avg": ndarray, "exp_avg_sq": ndarray}},
         "param_groups": [{hyperparameters..., "params": [global indices]}]},
        on every rank. The small per-parameter entries (scalars such as "step",
        and which arrays each parameter has) travel in one allgather; the arrays
        in one Allgatherv of a flat buffer (each rank's owned arrays, in global
        index order, then by name). A checkpoint written under ZeRO is therefore
        the same file as one written without it, and can be resumed on another
        number of ranks, or without ZeRO.
        """
        MPI = _comm.mpi()
        local_meta, pieces, problem = {}, [], None
        inner_state = self.optim.state if self.optim is not None else {}
        for j in sorted(inner_state):
            i = j + self.start
            p, entry, meta = self._params[i], inner_state[j], {}
            for k in sorted(entry):
                v = entry[k]
                if isinstance(v, (int, float, np.integer, np.floating)) and np.ndim(v) == 0:
                    meta[k] = v.item() if hasattr(v, "item") else v
                    continue
                if tuple(v.shape) != tuple(p.data.shape) or v.dtype != self.dtype:
                    problem = problem or (f"state '{k}' of parameter {i} (on rank {self.rank}) has shape "
                                          f"{tuple(v.shape)} and dtype {v.dtype}; only arrays shaped like the "
                                          f"parameter ({tuple(p.data.shape)}, {self.dtype}) can be gathered")
                    continue
                meta[k] = None                         # an array: its values come in the flat buffer
                pieces.append(_host(v).reshape(-1))
            local_meta[i] = meta
        # the problem travels with the metadata, so every rank raises together (no rank waits in Allgatherv)
        gathered = self.comm.allgather((local_meta, problem))
        problems = [pr for _, pr in gathered if pr]
        if problems:
            raise TypeError(f"ZeroRedundancyOptimizer.state_dict: {problems[0]}")
        all_meta = [meta for meta, _ in gathered]
        counts = [sum(int(self._params[i].data.size) for i, m in meta.items() for v in m.values() if v is None)
                  for meta in all_meta]
        displs = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])[:-1].tolist()
        flat = np.empty(int(sum(counts)), dtype=self.dtype)
        mine = flat[displs[self.rank]:displs[self.rank] + counts[self.rank]]
        if pieces:
            np.concatenate(pieces, out=mine)
        self.comm.Allgatherv(MPI.IN_PLACE, [flat, (counts, displs)])
        state, at = {}, 0
        for meta in all_meta:                          # rank order = global index order
            for i in sorted(meta):
                p, entry = self._params[i], {}
                for k in sorted(meta[i]):
                    if meta[i][k] is None:
                        entry[k] = flat[at:at + p.data.size].reshape(p.data.shape).copy()
                        at += p.data.size
                    else:
                        entry[k] = meta[i][k]
                state[i] = entry
        return {"state": state, "param_groups": Optimizer.state_dict(self)["param_groups"]}

    def load_state_dict(self, state_dict):
        """Restore from a full (single-process format) state dict; local: each rank keeps its owned slice.

        Accepts what state_dict() returns here, or what a plain optimizer_class
        over the same parameters returned (with or without ZeRO, any number of
        ranks). The whole checkpoint is checked on every rank (structure, indices,
        shapes), so every rank accepts or refuses it alike.
        """
        name = type(self).__name__
        saved_groups = self._checked_groups(state_dict)
        owned = {}
        for key, s in state_dict["state"].items():
            i = int(key)
            if not 0 <= i < len(self._params):
                raise ValueError(f"{name}.load_state_dict: state for parameter index {i}, but this "
                                 f"optimizer has {len(self._params)} parameters")
            shape = tuple(self._params[i].data.shape)
            for k, v in s.items():
                if not (isinstance(v, (int, float, np.integer, np.floating)) and np.ndim(v) == 0) \
                        and tuple(np.shape(v)) != shape:
                    raise ValueError(f"{name}.load_state_dict: state '{k}' of parameter {i} has shape "
                                     f"{tuple(np.shape(v))}, the parameter has shape {shape}")
            if self.start <= i < self.stop:
                owned[i - self.start] = s                 # contiguous range: inner index = global - start
        self._load_hyperparameters(saved_groups)
        if self.optim is not None:
            inner_groups, start = [], 0
            for saved, inner in zip(saved_groups, self.optim.param_groups):
                g = {k: v for k, v in saved.items() if k != "params"}
                g["params"] = list(range(start, start + len(inner["params"])))
                start += len(inner["params"])
                inner_groups.append(g)
            self.optim.load_state_dict({"state": owned, "param_groups": inner_groups})

    def __repr__(self):
        owned = self._counts[self.rank]
        lines = [f"{type(self).__name__} ({self.optimizer_class.__name__} on rank {self.rank} of "
                 f"{self.world_size}: parameters {self.start}..{self.stop - 1} of {len(self._params)}, "
                 f"{owned:,} of {int(self._offsets[-1]):,} elements)"
                 if self.start < self.stop else
                 f"{type(self).__name__} ({self.optimizer_class.__name__} on rank {self.rank} of "
                 f"{self.world_size}: owns no parameters of {len(self._params)})"]
        for gi, group in enumerate(self.param_groups):
            hp = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {gi}: {len(group['params'])} params, {hp}")
        lines.append(")")
        return "\n".join(lines)


def _host(a):
    """A NumPy view (or, for CuPy, a host copy) of an array."""
    return _to_numpy(a) if is_cupy(a) else np.asarray(a)
