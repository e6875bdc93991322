"""The MPI side of data parallelism: the communicator, same start weights, same configuration.

mpi4py (Dalcin et al. 2005-2021) wraps the MPI standard for Python; `mpirun
-n N python script.py` starts N processes (ranks 0..N-1) that can talk
through MPI.COMM_WORLD. mpi4py is optional for minilm, so it is imported
here only when a function needs it: `import minilm.distributed` works
without it, and a missing MPI library is a clear error at the first use.
"""
import hashlib
import json

import numpy as np

from minilm.backend import array_module

INSTALL_HINT = 'pip install "minilm[mpi]" (or: pip install mpi4py mpich)'


def mpi():
    """The mpi4py.MPI module, or a RuntimeError that says how to install it."""
    try:
        from mpi4py import MPI                      # optional dependency: imported on first use only
    except ImportError as err:
        raise RuntimeError(f"minilm.distributed needs MPI through mpi4py, which is not installed or cannot "
                           f"load its MPI library ({err}); {INSTALL_HINT}, then start the ranks with "
                           f"`mpirun -n 2 python your_script.py`") from None
    return MPI


def world():
    """MPI.COMM_WORLD: every process started by the same mpirun."""
    return mpi().COMM_WORLD


def get_rank(comm=None):
    return (comm if comm is not None else world()).Get_rank()


def get_world_size(comm=None):
    return (comm if comm is not None else world()).Get_size()


def config_digest(config):
    """sha256 of the configuration as canonical JSON (sorted keys), for comparing across ranks.

    config: a dataclass with to_dict() (GPTConfig, BertConfig, ...) or a dict.
    """
    values = config.to_dict() if hasattr(config, "to_dict") else config
    if not isinstance(values, dict):
        raise TypeError(f"config_digest: expected a config with to_dict() or a dict, got {type(config).__name__}")
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_same_config(config, comm, what="config"):
    """Raise ValueError on EVERY rank unless all ranks hold the same config (compared by sha256).

    Every rank takes part in one allgather and sees all digests, so all of them
    raise together (none is left waiting in a later collective). The message
    names the ranks whose config differs from rank 0's.
    """
    digests = comm.allgather(config_digest(config))
    differing = [r for r, d in enumerate(digests) if d != digests[0]]
    if differing:
        raise ValueError(f"distributed: ranks {differing} have a different {what} from rank 0 "
                         f"(sha256 {digests[0][:12]} on rank 0; "
                         + ", ".join(f"{digests[r][:12]} on rank {r}" for r in differing)
                         + f"); every rank must build the same model and training set-up")
    return digests[0]


def parameter_layout(model):
    """(name, shape, dtype) of every parameter, in registration order: what ranks must agree on."""
    return [[name, list(p.shape), str(p.data.dtype)] for name, p in model.named_parameters()]


def broadcast_parameters(model, comm, root=0):
    """Overwrite every rank's parameters with rank `root`'s, so all replicas start identical.

    Checks first that the ranks' parameter names, shapes and dtypes agree (a
    mismatch would otherwise be a garbled broadcast or a hang). Parameters
    are sent one Bcast each: this happens once, before training.
    """
    check_same_config({"parameters": parameter_layout(model)}, comm, what="parameter layout (names, shapes, dtypes)")
    for _, p in model.named_parameters():
        data = np.ascontiguousarray(p.numpy())
        if data is p.data and data.flags.writeable:
            comm.Bcast(data, root=root)
        else:                                       # a view or a GPU array: receive into a copy, then set it
            data = data.copy()
            comm.Bcast(data, root=root)
            p.data[...] = array_module(p.data).asarray(data)
    return model
