"""Gradient reduction on the GPU with NCCL, through CuPy (cupy.cuda.nccl), for DistributedDataParallel.

When the parameters are CuPy arrays, the MPI path (minilm.distributed.ddp)
copies every gradient to the host, all-reduces it there and copies the
average back: two PCIe trips per step. NCCL (NVIDIA's collective library)
all-reduces buffers that stay in GPU memory, over NVLink or the network,
with its ring/tree algorithms (the same bandwidth-optimal all-reduce of
Patarasuk & Yuan 2009 that cost_model.py prices). Here:

* set-up: MPI still starts the ranks and carries one message: rank 0 asks
  NCCL for a unique id (nccl.get_unique_id()), broadcasts it over the MPI
  communicator, and every rank joins NcclCommunicator(world_size, id, rank)
  on its own GPU (select_device picks GPU local_rank % device_count, the
  local rank counting the ranks on the same machine);
* a bucket's sum: the gradient copies into the bucket run on the compute
  stream; an event recorded there after them makes a dedicated side stream
  wait, and the allReduce is enqueued on that side stream, so backward goes
  on while NCCL reduces (as PyTorch's DDP does with its NCCL stream);
* waiting: finish() synchronises the side stream once, after which every
  bucket holds the sum. The average is then formed on the device and never
  leaves it.

Every name from CuPy/mpi4py is imported inside a function, so this module
imports without either (the CPU path never needs them).
"""
import os

from minilm.distributed import comm as _comm

CUPY_HINT = "pip install cupy-cuda13x (the CuPy wheel for your CUDA version; the project's \"cuda\" extra)"
NCCL_HINT = ("NCCL is one of CuPy's optional libraries: install it as the section 'Additional CUDA Libraries' "
             "of CuPy's installation guide says for your CuPy version")


def unavailable_reason():
    """None when CuPy with NCCL support and a CUDA device are usable here, else what is missing and the fix."""
    try:
        import cupy
    except ImportError as err:
        return f"CuPy is not installed ({err}); {CUPY_HINT}"
    try:
        from cupy.cuda import nccl
    except ImportError as err:
        return f"CuPy {cupy.__version__} cannot import cupy.cuda.nccl ({err}); {NCCL_HINT}"
    if not getattr(nccl, "available", False):
        return f"CuPy {cupy.__version__} was built without NCCL or cannot load the NCCL library; {NCCL_HINT}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:                      # CUDA driver missing or broken
        return f"CuPy cannot reach a CUDA device ({err})"
    if count < 1:
        return "no CUDA device is visible (check CUDA_VISIBLE_DEVICES and nvidia-smi)"
    return None


def select_device(comm):
    """Make GPU (local rank % device count) current on this rank and return its id.

    Call it before model.to("cuda"): Tensor.to puts arrays on the current
    device, and two ranks on one GPU cannot share a NCCL communicator. The
    local rank is this rank's index among the ranks on the same machine
    (MPI's COMM_TYPE_SHARED split). With CUDA_VISIBLE_DEVICES set to one GPU
    per rank, every rank simply takes its device 0.
    """
    import cupy
    MPI = _comm.mpi()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_rank = node.Get_rank()
    node.Free()
    device = local_rank % cupy.cuda.runtime.getDeviceCount()
    cupy.cuda.Device(device).use()
    return device


def ranks_sharing_a_gpu(places):
    """'ranks [0, 1] use GPU 0 of host 'a'' for the first GPU that several ranks would share, else None.

    places[r] = (host name, CUDA_VISIBLE_DEVICES or None, device id) of rank r.
    The same host, the same visible-device list and the same id mean the same
    physical GPU (a different CUDA_VISIBLE_DEVICES can map one id to two GPUs).
    """
    groups = {}
    for rank, place in enumerate(places):
        groups.setdefault(tuple(place), []).append(rank)
    for (host, _, device), ranks in groups.items():
        if len(ranks) > 1:
            return f"ranks {ranks} use GPU {device} of host {host!r}"
    return None


def parameter_device(arrays):
    """The id of the one GPU that holds all these CuPy arrays (ValueError if they are spread over several)."""
    devices = sorted({a.device.id for a in arrays})
    if len(devices) != 1:
        raise ValueError(f"DistributedDataParallel(backend='nccl'): the parameters lie on GPUs {devices}; "
                         f"one rank drives one GPU, so move the whole model with model.to('cuda') after "
                         f"minilm.distributed.nccl.select_device(comm)")
    return devices[0]


class NcclReducer:
    """Sums float32 CuPy bucket buffers across ranks with NCCL allReduce on a side stream.

    The three operations DistributedDataParallel uses (MpiReducer in ddp.py has the same):
    start(buffer) -> handle (enqueue the sum, in place), wait(handles) (the sums are done),
    sum(buffer) (start and wait). progress() does nothing: the GPU runs NCCL's kernels by itself.
    """
    name = "nccl"

    def __init__(self, comm, device):
        import cupy
        from cupy.cuda import nccl
        self.xp, self._nccl = cupy, nccl
        self.device = int(device)
        cupy.cuda.Device(self.device).use()       # buffers (cupy.zeros) and the stream belong to this GPU
        self._check_one_rank_per_gpu(comm)
        rank, size = comm.Get_rank(), comm.Get_size()
        uid = nccl.get_unique_id() if rank == 0 else None     # a tuple (bytes from CuPy 14): picklable
        uid = comm.bcast(uid, root=0)
        self.nccl_comm = nccl.NcclCommunicator(size, uid, rank)    # collective: returns once every rank joined
        self.stream = cupy.cuda.Stream(non_blocking=True)

    def _check_one_rank_per_gpu(self, comm):
        """Raise on every rank when two ranks of one machine would use the same GPU (NCCL refuses it)."""
        me = (_comm.mpi().Get_processor_name(), os.environ.get("CUDA_VISIBLE_DEVICES"), self.device)
        shared = ranks_sharing_a_gpu(comm.allgather(me))
        if shared:
            raise ValueError(f"DistributedDataParallel(backend='nccl'): {shared}, and NCCL needs one GPU per "
                             f"rank; call minilm.distributed.nccl.select_device(comm) before model.to('cuda'), "
                             f"start at most as many ranks per machine as it has GPUs, or use backend='mpi'")

    def local(self, grad):
        """A gradient as the bucket copy takes it: already on the device."""
        return grad

    def start(self, buffer):
        cupy, nccl = self.xp, self._nccl
        ready = cupy.cuda.Event(disable_timing=True)
        ready.record(cupy.cuda.get_current_stream())    # after the gradient copies into this buffer
        self.stream.wait_event(ready)
        self.nccl_comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, nccl.NCCL_FLOAT32, nccl.NCCL_SUM,
                                 self.stream.ptr)     # in place: send and receive buffer are the same
        return ready

    def progress(self, handles):
        pass

    def wait(self, handles):
        self.stream.synchronize()                   # one stream: every sum enqueued on it is now done

    def sum(self, buffer):
        self.wait([self.start(buffer)])
