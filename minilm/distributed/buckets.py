"""Gradient buckets: parameters grouped so a few large all-reduces replace one per parameter.

Every collective call costs a fixed latency (a round of messages between the
ranks) plus a part that grows with the bytes sent. A GPT has dozens of
parameter tensors, many tiny (biases, LayerNorm gains), so reducing them one
by one pays the latency dozens of times. Data parallelism (Li et al. 2020,
"PyTorch Distributed: Experiences on Accelerating Data Parallel Training",
section 3.2.3) instead copies the gradients into a few contiguous buffers of
about `bucket_cap_mb` each and reduces each buffer in one call.

Buckets are filled in the REVERSE order of the parameters' registration:
backward produces the last layers' gradients first, so the first bucket is
complete (and can be sent) while backward still runs through the early
layers. Nothing here needs MPI. The buffers are NumPy arrays by default; the
NCCL path (minilm.distributed.nccl) passes xp=cupy so they live on the GPU.
"""
from dataclasses import dataclass, field

import numpy as np

from minilm.backend import array_module

BUCKET_DTYPE = np.float32


@dataclass
class Bucket:
    """Parameters reduced together, and where each one's gradient lies in the flat buffer."""
    index: int
    params: list                       # in the order they are laid out in the buffer
    offsets: list                      # start of each parameter's gradient in the buffer
    buffer: np.ndarray = field(repr=False)   # or a cupy.ndarray (buffers on the GPU, for NCCL)

    @property
    def numel(self):
        return int(self.buffer.size)

    @property
    def nbytes(self):
        return int(self.buffer.nbytes)


def bucket_parameters(params, bucket_cap_mb=25.0, xp=np):
    """Group params (in registration order) into Buckets of about bucket_cap_mb megabytes.

    Parameters are taken last-first. A bucket is closed when adding the next
    parameter would take it past the cap; a single parameter larger than the
    cap gets a bucket of its own (a parameter is never split). The cap counts
    float32 bytes, 1 MB = 2**20 bytes (PyTorch's bucket_cap_mb, default 25).
    Parameters that do not require grad are left out. xp is the array module
    that allocates the buffers (numpy, or cupy for buffers on the current GPU).
    """
    if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)) or not bucket_cap_mb > 0:
        raise ValueError(f"bucket_parameters: bucket_cap_mb must be a positive number, got {bucket_cap_mb!r}")
    params = [p for p in params if p.requires_grad]
    seen = set()
    for p in params:
        if id(p) in seen:
            raise ValueError("bucket_parameters: a parameter appears twice; pass each parameter once "
                             "(model.parameters() already lists a shared/tied weight once)")
        seen.add(id(p))
        if p.data.dtype.kind != "f":
            raise TypeError(f"bucket_parameters: gradients are reduced as float32, but a parameter of "
                            f"shape {p.shape} has dtype {p.data.dtype}")
    cap_bytes = bucket_cap_mb * 2 ** 20
    itemsize = np.dtype(BUCKET_DTYPE).itemsize
    groups, current, current_bytes = [], [], 0
    for p in reversed(params):
        size = p.data.size * itemsize
        if current and current_bytes + size > cap_bytes:
            groups.append(current)
            current, current_bytes = [], 0
        current.append(p)
        current_bytes += size
    if current:
        groups.append(current)
    buckets = []
    for i, group in enumerate(groups):
        offsets = np.cumsum([0] + [p.data.size for p in group]).tolist()
        buckets.append(Bucket(i, group, offsets[:-1], xp.zeros(offsets[-1], dtype=BUCKET_DTYPE)))
    return buckets


def flatten_into(bucket, grads):
    """Copy grads (one array per bucket.params, None = a zero gradient) into bucket.buffer."""
    if len(grads) != len(bucket.params):
        raise ValueError(f"flatten_into: bucket {bucket.index} holds {len(bucket.params)} parameters, "
                         f"got {len(grads)} gradients")
    for p, start, g in zip(bucket.params, bucket.offsets, grads):
        view = bucket.buffer[start:start + p.data.size]
        if g is None:
            view[:] = 0.0
            continue
        if tuple(g.shape) != p.shape:
            raise ValueError(f"flatten_into: a gradient of shape {tuple(g.shape)} for a parameter of "
                             f"shape {p.shape}")
        view[:] = array_module(bucket.buffer).asarray(g).reshape(-1)
    return bucket.buffer


def unflatten(bucket, buffer=None):
    """The gradients in a bucket's buffer, one new array per parameter, shaped and typed like it."""
    buffer = bucket.buffer if buffer is None else buffer
    if buffer.size != bucket.numel:
        raise ValueError(f"unflatten: bucket {bucket.index} has {bucket.numel} elements, buffer has {buffer.size}")
    return [buffer[start:start + p.data.size].reshape(p.shape).astype(p.data.dtype, copy=True)
            for p, start in zip(bucket.params, bucket.offsets)]
