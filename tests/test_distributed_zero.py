"""ZeRO-1 (minilm.distributed.zero): the partition as a pure function, and 2 MPI ranks against plain AdamW.

The partition tests run everywhere (no MPI). The rest runs
tests/mpi_scripts/zero_equivalence.py under `mpirun -n 2` as a subprocess
(MPI cannot be started twice inside the pytest process) and is skipped,
saying why, without mpi4py, an MPI launcher or a loadable MPI library.
"""
from pathlib import Path

import numpy as np
import pytest

from minilm.distributed.zero import ZeroRedundancyOptimizer, partition_parameters

import mpi_launch

SCRIPT = Path(__file__).resolve().parent / "mpi_scripts" / "zero_equivalence.py"


# ----- the partition: a pure function of the sizes and the world size ---------------------------------
def check_partition(sizes, world_size):
    ranges = partition_parameters(sizes, world_size)
    assert len(ranges) == world_size
    assert ranges[0][0] == 0 and ranges[-1][1] == len(sizes)               # covers everything ...
    for (a, b), (c, d) in zip(ranges, ranges[1:]):
        assert b == c                                                        # ... contiguously, in order
    for a, b in ranges:
        assert a <= b                                                        # whole parameters, maybe none
    total, largest = sum(sizes), max(sizes, default=0)
    loads = [sum(sizes[a:b]) for a, b in ranges]
    for load in loads:
        assert abs(load - total / world_size) <= largest, (sizes, world_size, ranges, loads)
    return ranges, loads


def test_partition_examples():
    assert partition_parameters([10, 10, 10, 10], 2) == [(0, 2), (2, 4)]
    assert partition_parameters([100], 2) == [(0, 0), (0, 1)]               # a rank may own nothing
    assert partition_parameters([1, 1, 100], 2) == [(0, 2), (2, 3)]
    assert partition_parameters([5, 5], 4) == [(0, 0), (0, 1), (1, 1), (1, 2)]
    assert partition_parameters([3, 4, 5], 1) == [(0, 3)]
    assert partition_parameters([], 3) == [(0, 0)] * 3


@pytest.mark.parametrize("world_size", [1, 2, 3, 8, 64])
def test_partition_properties_on_random_sizes(world_size):
    rng = np.random.default_rng(world_size)
    for _ in range(200):
        n = int(rng.integers(0, 40))
        sizes = [int(s) for s in rng.integers(0, 1000, n) ** rng.integers(1, 3, n)]   # some huge, some zero
        check_partition(sizes, world_size)


def test_partition_of_a_gpt_is_balanced():
    from minilm.models import GPT, GPTConfig
    model = GPT(GPTConfig.preset("baby", vocab_size=65), generator=np.random.default_rng(0))
    sizes = [p.data.size for p in model.parameters()]
    for n in (2, 4, 8):
        _, loads = check_partition(sizes, n)
        assert max(loads) - min(loads) <= 2 * max(sizes)
    _, loads = check_partition(sizes, 2)
    assert max(loads) / (sum(sizes) / 2) < 1.1             # GPT tensors are small next to the whole


def test_partition_rejects_bad_input():
    with pytest.raises(ValueError, match="world_size"):
        partition_parameters([1, 2], 0)
    with pytest.raises(ValueError, match="sizes must be >= 0"):
        partition_parameters([1, -2], 2)


def test_optimizer_class_must_be_a_minilm_optimizer():
    with pytest.raises(TypeError, match="optimizer_class"):
        ZeroRedundancyOptimizer([], comm=None, optimizer_class=dict)


# ----- 2 ranks under mpirun ----------------------------------------------------------------------------
def mpi_only(test):
    """Skip (saying why) without mpi4py or an MPI launcher; the partition tests above run regardless."""
    return pytest.mark.skipif(mpi_launch.missing() is not None, reason=str(mpi_launch.missing()))(test)


@pytest.fixture(scope="module")
def report():
    """Run the script once on 2 ranks; return its per-check results by name."""
    return mpi_launch.checks_of_passing_run(SCRIPT)


@mpi_only
@pytest.mark.parametrize("model", ["gpt", "bert-mlm"])
def test_zero_reproduces_ddp_exactly_and_one_process_closely(report, model):
    """The script asserts bit-equality with DDP + AdamW; here: close to one process, clipping acted."""
    r = report[model]
    assert r["identical_to_ddp_adamw"] is True
    assert r["max_loss_rel_err_vs_one_process"] < 1e-5
    assert r["max_weight_abs_err_vs_one_process"] < 1e-5
    assert min(r["ref_norms"]) > 0.5                       # the clip threshold: clipping acted on every step


@mpi_only
@pytest.mark.parametrize("model", ["gpt", "bert-mlm"])
def test_each_rank_holds_about_half_of_the_moments(report, model):
    r = report[model]
    local, full = r["local_state_nbytes"], r["full_state_nbytes"]
    assert sum(local) == full
    assert all(0.35 < b / full < 0.65 for b in local), local
    (a0, b0), (a1, b1) = r["partition"]
    assert a0 == 0 and b0 == a1 and b0 > 0                 # contiguous, both ranks own something


@mpi_only
def test_uneven_partitions(report):
    one = report["one parameter"]
    assert one["partition"] == [[0, 0], [0, 1]] and one["inner_is_none"] == [True, False]
    assert one["local_state_nbytes"] == [0, 56]
    assert "owns no parameters" in one["repr"]
    assert report["a group empty on each rank"]["partition"] == [[0, 1], [1, 4]]
    assert report["an empty group"]["partition"] == [[0, 1], [1, 2]]


@mpi_only
def test_setup_errors_are_clear(report):
    assert "ranks [1] have a different ZeroRedundancyOptimizer layout" in report["layout mismatch"]["message"]
    assert "ranks [1]" in report["hyperparameter mismatch"]["message"]
    assert "fixed at construction" in report["clear errors"]["message"]
    assert "parameter index 5" in report["clear errors"]["load_message"]
