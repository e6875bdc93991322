"""DistributedDataParallel with NCCL (minilm.distributed.nccl): choosing the backend here; GPU runs where GPUs exist.

The first tests need no GPU, CuPy or MPI: which backend a model gets, the
errors for a choice that cannot work, and that the NCCL module imports
without CuPy or mpi4py. The `gpu` tests run tests/mpi_scripts/nccl_equivalence.py
under `mpirun -n 1` (the NCCL plumbing and DDP on one GPU) and, with two or
more GPUs, `mpirun -n 2`; without CuPy + NCCL + a CUDA device + mpi4py +
mpirun they are skipped, saying which is missing.
"""
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from minilm.distributed import DistributedDataParallel, bucket_parameters
from minilm.distributed import ddp as dist_ddp
from minilm.distributed import nccl as dist_nccl
from minilm.models import GPT, GPTConfig
from minilm.nn import Parameter

import mpi_launch

SCRIPT = Path(__file__).resolve().parent / "mpi_scripts" / "nccl_equivalence.py"


class FakeCupyArray:
    """Looks like a CuPy array to minilm.backend.is_cupy (its type's module starts with "cupy")."""
    __module__ = "cupy._core.core"


class FakeComm:
    """A communicator of `size` ranks seen from rank 0; allgather returns what the other ranks 'sent'."""

    def __init__(self, others=()):
        self.others = list(others)

    def Get_size(self):
        return 1 + len(self.others)

    def Get_rank(self):
        return 0

    def allgather(self, value):
        return [value] + self.others


def tiny_gpt():
    cfg = GPTConfig.preset("nano", vocab_size=16, n_layer=1, n_embd=8, n_head=2, block_size=4, dropout=0.0)
    return GPT(cfg, generator=np.random.default_rng(0))


# ----- without a GPU ------------------------------------------------------------------------------
def test_cpu_parameters_get_mpi_and_nccl_for_them_is_a_clear_error():
    arrays = [np.zeros(3, np.float32)]
    assert dist_ddp.choose_backend("auto", arrays) == "mpi"
    assert dist_ddp.choose_backend("mpi", arrays) == "mpi"
    with pytest.raises(ValueError) as err:
        dist_ddp.choose_backend("nccl", arrays)
    for text in ("backend='nccl'", "parameters are on cpu", "model.to('cuda')", "select_device", "backend='mpi'"):
        assert text in str(err.value)


def test_an_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown backend 'bogus'; choose one of \('auto', 'mpi', 'nccl'\)"):
        dist_ddp.choose_backend("bogus", [np.zeros(3, np.float32)])


def test_gpu_parameters_take_nccl_only_when_it_is_usable(monkeypatch):
    gpu = [FakeCupyArray(), FakeCupyArray()]
    monkeypatch.setattr(dist_nccl, "unavailable_reason", lambda: None)
    assert dist_ddp.choose_backend("auto", gpu) == "nccl"
    assert dist_ddp.choose_backend("nccl", gpu) == "nccl"
    assert dist_ddp.choose_backend("mpi", gpu) == "mpi"
    monkeypatch.setattr(dist_nccl, "unavailable_reason", lambda: "CuPy is not installed (no module); pip install cupy")
    assert dist_ddp.choose_backend("auto", gpu) == "mpi"                 # auto falls back to the host path
    with pytest.raises(RuntimeError, match=r"backend='nccl'\): CuPy is not installed .*; or use backend='mpi'"):
        dist_ddp.choose_backend("nccl", gpu)


def test_nccl_with_parameters_on_both_devices_is_refused(monkeypatch):
    monkeypatch.setattr(dist_nccl, "unavailable_reason", lambda: None)
    with pytest.raises(ValueError, match="parameters are on cpu and cuda"):
        dist_ddp.choose_backend("nccl", [FakeCupyArray(), np.zeros(2, np.float32)])
    assert dist_ddp.choose_backend("auto", [FakeCupyArray(), np.zeros(2, np.float32)]) == "mpi"


def test_ddp_refuses_a_bad_backend_before_any_other_collective():
    """FakeComm has no Bcast/Allreduce: reaching the broadcast would be an AttributeError, not these errors."""
    with pytest.raises(ValueError, match="parameters are on cpu"):
        DistributedDataParallel(tiny_gpt(), FakeComm(), backend="nccl")
    with pytest.raises(ValueError, match="unknown backend 'bogus'"):
        DistributedDataParallel(tiny_gpt(), FakeComm(), backend="bogus")


def test_ranks_agree_on_one_backend_or_all_raise():
    cpu = [np.zeros(2, np.float32)]
    assert dist_ddp._agree_on_backend("auto", cpu, FakeComm([("mpi", None)])) == "mpi"
    with pytest.raises(RuntimeError, match="rank 1 cannot use backend 'auto': CuPy is not installed"):
        dist_ddp._agree_on_backend("auto", cpu, FakeComm([(None, "CuPy is not installed")]))
    with pytest.raises(RuntimeError, match=r"the ranks chose different backends \['mpi', 'nccl'\]"):
        dist_ddp._agree_on_backend("auto", cpu, FakeComm([("nccl", None)]))


def test_two_ranks_on_one_gpu_are_named():
    assert dist_nccl.ranks_sharing_a_gpu([("a", None, 0), ("a", None, 1)]) is None
    assert dist_nccl.ranks_sharing_a_gpu([("a", None, 0), ("b", None, 0)]) is None      # two machines
    assert dist_nccl.ranks_sharing_a_gpu([("a", "2", 0), ("a", "3", 0)]) is None        # CUDA_VISIBLE_DEVICES
    assert dist_nccl.ranks_sharing_a_gpu([("a", None, 0), ("a", None, 1), ("a", None, 0)]) == \
        "ranks [0, 2] use GPU 0 of host 'a'"


def test_the_parameters_must_sit_on_one_gpu():
    on = lambda i: types.SimpleNamespace(device=types.SimpleNamespace(id=i))   # noqa: E731  (what .device.id reads)
    assert dist_nccl.parameter_device([on(1), on(1)]) == 1
    with pytest.raises(ValueError, match=r"the parameters lie on GPUs \[0, 1\].*select_device"):
        dist_nccl.parameter_device([on(0), on(1)])


def test_buckets_allocate_their_buffers_with_the_given_array_module():
    made = []

    class Xp:
        @staticmethod
        def zeros(n, dtype):
            made.append((n, np.dtype(dtype)))
            return np.zeros(n, dtype)

    ps = [Parameter(np.ones(5, np.float32)), Parameter(np.ones(7, np.float32))]
    buckets = bucket_parameters(ps, 25.0, xp=Xp)
    assert made == [(12, np.dtype(np.float32))] and buckets[0].numel == 12


def test_the_nccl_module_imports_without_cupy_or_mpi4py():
    code = ("import sys; sys.modules['cupy'] = None; sys.modules['mpi4py'] = None\n"
            "import minilm.distributed.nccl as n, minilm.distributed.ddp as d\n"
            "print(n.unavailable_reason())\n"
            "print(d.choose_backend('auto', [type('ndarray', (), {'__module__': 'cupy'})()]))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    reason, chosen = run.stdout.strip().splitlines()
    assert reason.startswith("CuPy is not installed") and "pip install cupy" in reason
    assert chosen == "mpi"


class FakeGpu:
    """Stand-ins for the CuPy names nccl.py calls (cupy.cuda.Device/Stream/Event/get_current_stream,
    cupy.cuda.nccl), logging each call, so the order of the calls is checked without a GPU.
    What they do on a real GPU is left to the gpu tests below."""

    def __init__(self, world_size=1):
        log = self.log = []

        class Device:
            def __init__(self, i):
                self.id = i

            def use(self):
                log.append(("use device", self.id))

        class Stream:
            def __init__(self, non_blocking=False):
                self.ptr, self.name = (7 if non_blocking else 0), ("side" if non_blocking else "compute")
                log.append(("new stream", non_blocking))

            def wait_event(self, event):
                log.append((self.name + " waits for", event.recorded_on))

            def synchronize(self):
                log.append((self.name + " synchronize",))

        compute = Stream()

        class Event:
            def __init__(self, disable_timing=False):
                self.recorded_on = None

            def record(self, stream=None):
                self.recorded_on = stream.name if stream is not None else "null stream"
                log.append(("record event on", self.recorded_on))

        class Communicator:
            def __init__(self, ndev, uid, rank):
                log.append(("NcclCommunicator", ndev, uid, rank))

            def allReduce(self, send, recv, count, dtype, op, stream):
                log.append(("allReduce", send, recv, count, dtype, op, stream))

        nccl = types.SimpleNamespace(available=True, get_unique_id=lambda: b"uid", NcclCommunicator=Communicator,
                                     NCCL_FLOAT32=7, NCCL_SUM=0)
        runtime = types.SimpleNamespace(getDeviceCount=lambda: 2)
        self.cuda = types.SimpleNamespace(Device=Device, Stream=Stream, Event=Event, nccl=nccl, runtime=runtime,
                                          get_current_stream=lambda: compute)
        self.cupy = types.SimpleNamespace(cuda=self.cuda, __version__="fake",
                                          zeros=lambda n, dtype: np.zeros(n, dtype).view(HostDeviceArray))
        log.clear()                                     # the compute stream's creation is not nccl.py's

    def install(self, monkeypatch, processor="host-a"):
        monkeypatch.setitem(sys.modules, "cupy", self.cupy)
        monkeypatch.setitem(sys.modules, "cupy.cuda", self.cuda)
        monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", self.cuda.nccl)
        fake_mpi = types.SimpleNamespace(Get_processor_name=lambda: processor, COMM_TYPE_SHARED=1)
        monkeypatch.setattr(dist_nccl._comm, "mpi", lambda: fake_mpi)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


class HostDeviceArray(np.ndarray):
    """A NumPy array with CuPy's .data.ptr (the address NCCL would be given): a bucket buffer for FakeGpu."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)


class FakeBuffer:
    size = 12
    data = types.SimpleNamespace(ptr=4096)


class BcastComm(FakeComm):
    def bcast(self, value, root=0):
        return value


def test_nccl_reducer_orders_its_calls_as_the_streams_need(monkeypatch):
    gpu = FakeGpu()
    gpu.install(monkeypatch)
    reducer = dist_nccl.NcclReducer(BcastComm(), 1)
    assert reducer.xp is gpu.cupy and reducer.name == "nccl"
    assert gpu.log == [("use device", 1), ("NcclCommunicator", 1, b"uid", 0), ("new stream", True)]
    gpu.log.clear()
    handle = reducer.start(FakeBuffer())
    reducer.progress([handle])
    reducer.wait([handle])
    # the reduction waits for the gradient copies on the compute stream, runs in place on the side stream,
    # and wait() blocks until the side stream is done
    assert gpu.log == [("record event on", "compute"), ("side waits for", "compute"),
                       ("allReduce", 4096, 4096, 12, 7, 0, 7), ("side synchronize",)]
    gpu.log.clear()
    reducer.sum(FakeBuffer())
    assert [entry[0] for entry in gpu.log] == ["record event on", "side waits for", "allReduce", "side synchronize"]


def test_nccl_reducer_refuses_two_ranks_on_one_gpu_on_every_rank(monkeypatch):
    FakeGpu().install(monkeypatch)
    same_gpu = BcastComm([("host-a", None, 0)])                 # rank 1 reports GPU 0 of host-a too
    with pytest.raises(ValueError, match=r"ranks \[0, 1\] use GPU 0 of host 'host-a', and NCCL needs one GPU"):
        dist_nccl.NcclReducer(same_gpu, 0)
    dist_nccl.NcclReducer(BcastComm([("host-a", None, 1)]), 0)  # rank 1 on GPU 1: fine


def test_ddp_drives_the_nccl_reducer_like_the_mpi_one(monkeypatch):
    """One rank, FakeGpu: DDP(backend="nccl") allocates its buckets with cupy.zeros, starts one allReduce per
    bucket during backward (overlap) and waits once in finish(); on one rank the averaged gradients equal the
    plain backward's, bit for bit. (Whether CuPy and NCCL do what the calls ask is for the gpu tests.)"""
    gpu = FakeGpu()
    gpu.install(monkeypatch)
    monkeypatch.setattr(dist_ddp, "choose_backend", lambda backend, arrays: "nccl")
    monkeypatch.setattr(dist_nccl, "parameter_device", lambda arrays: 0)
    ids = np.random.default_rng(1).integers(0, 16, (2, 5))
    alone = tiny_gpt()
    alone(ids[:, :4], ids[:, 1:])[1].backward()
    model = tiny_gpt()
    ddp = DistributedDataParallel(model, BcastComm(), bucket_cap_mb=1024 / 2 ** 20, broadcast=False,
                                  backend="nccl")
    assert ddp.backend == "nccl" and len(ddp.buckets) > 2
    assert all(isinstance(b.buffer, HostDeviceArray) for b in ddp.buckets)    # made by (fake) cupy.zeros
    for step in range(2):                                # step 2 runs on the buckets regrouped after step 1
        gpu.log.clear()
        ddp(ids[:, :4], ids[:, 1:])[1].backward()
        reductions = [e for e in gpu.log if e[0] == "allReduce"]
        assert ddp.buckets_started == len(ddp.buckets) == len(reductions)
        assert [r[1] for r in reductions] == [b.buffer.ctypes.data for b in ddp.buckets]
        assert [r[3] for r in reductions] == [b.numel for b in ddp.buckets]
        assert ("side synchronize",) not in gpu.log      # backward only enqueues
        ddp.finish()
        assert gpu.log[-1] == ("side synchronize",)
        for (name, p), q in zip(model.named_parameters(), alone.parameters()):
            np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)
            assert not any(np.shares_memory(p.grad, b.buffer) for b in ddp.buckets)   # a copy, not a view
        for p in model.parameters():
            p.grad = None


def test_select_device_takes_the_local_rank_modulo_the_gpus(monkeypatch):
    gpu = FakeGpu()                                             # 2 GPUs
    gpu.install(monkeypatch)

    class Node:
        def __init__(self, rank):
            self.rank, self.freed = rank, False

        def Get_rank(self):
            return self.rank

        def Free(self):
            self.freed = True

    for local_rank, expected in [(0, 0), (1, 1), (2, 0)]:
        node = Node(local_rank)
        comm = types.SimpleNamespace(Split_type=lambda kind, node=node: node)
        assert dist_nccl.select_device(comm) == expected and node.freed
        assert gpu.log[-1] == ("use device", expected)


# ----- on GPUs ------------------------------------------------------------------------------------
def _gpu_count():
    """GPUs usable for NCCL here, or a skip reason."""
    reason = mpi_launch.unusable()
    if reason:
        return reason
    problem = dist_nccl.unavailable_reason()
    if problem is not None:
        return f"needs CuPy with NCCL and a CUDA device: {problem}"
    import cupy
    return cupy.cuda.runtime.getDeviceCount()


_RUNS = {}


def gpu_run(ranks):
    """The script's results on `ranks` ranks (run once per module): ({check: result}, output, exit status), or a skip."""
    count = _gpu_count()
    if isinstance(count, str):
        pytest.skip(count)
    if count < ranks:
        pytest.skip(f"{ranks} ranks need {ranks} GPUs (NCCL wants one per rank); this machine has {count}")
    if ranks not in _RUNS:
        checks, run = mpi_launch.run_script(SCRIPT, ranks, timeout=300)
        _RUNS[ranks] = checks, run.stdout + run.stderr, run.returncode
    return _RUNS[ranks]


def _check(ranks, name):
    checks, output, status = gpu_run(ranks)
    assert name in checks, f"check {name!r} did not pass on {ranks} rank(s) (exit status {status}):\n{output[-6000:]}"
    return checks[name]


@pytest.mark.gpu
@pytest.mark.parametrize("ranks", [1, 2])
def test_nccl_plumbing_sums_a_device_buffer(ranks):
    """Unique id over MPI, a buffer on the device, allReduce on the side stream: the sum over ranks."""
    r = _check(ranks, "nccl plumbing")
    assert r["ranks"] == ranks


@pytest.mark.gpu
@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("check", ["gpt nccl overlap tiny-buckets", "gpt nccl no-overlap"])
def test_nccl_ddp_reproduces_the_single_gpu_run(ranks, check):
    r = _check(ranks, check)
    assert r["backend"] == "nccl" and r["ranks"] == ranks
    assert r["max_loss_rel_err"] < 1e-5 and r["max_weight_abs_err"] < 1e-5
    assert min(r["ref_norms"]) > 0.5                  # the clip threshold: clipping acted on every step


@pytest.mark.gpu
@pytest.mark.parametrize("ranks", [1, 2])
def test_auto_picks_nccl_for_gpu_parameters_and_the_whole_run_passes(ranks):
    r = _check(ranks, "backend choice")
    assert r["auto"] == "nccl" and "parameters are on cpu" in r["cpu_model_nccl_error"]
    checks, output, status = gpu_run(ranks)
    assert status == 0 and "ALL OK" in output, f"exit status {status}:\n{output[-6000:]}"
