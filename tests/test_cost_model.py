"""The ring all-reduce cost model and scaling efficiency (minilm.distributed.cost_model); no MPI needed."""
import math

import numpy as np
import pytest

from minilm.distributed import cost_model as cm

ALPHA, BW = 5e-6, 1.25e9          # 5 us per step, 10 Gb/s in bytes per second


def test_one_rank_costs_nothing():
    assert cm.ring_allreduce_time(1, 10 ** 9, ALPHA, BW) == 0.0
    assert cm.scaling_efficiency(1, 0.1, 10 ** 9, ALPHA, BW) == 1.0


def test_two_ranks_move_the_buffer_once_plus_two_latencies():
    # N = 2: two steps (one reduce-scatter, one all-gather), each sending half the buffer.
    nbytes = 8_000_000
    assert cm.ring_allreduce_time(2, nbytes, ALPHA, BW) == pytest.approx(2 * ALPHA + nbytes / BW)
    assert cm.ring_allreduce_time(4, nbytes, 0.0, BW) == pytest.approx(2 * 3 / 4 * nbytes / BW)
    assert cm.ring_allreduce_time(4, nbytes, ALPHA, BW) == pytest.approx(6 * ALPHA + 1.5 * nbytes / BW)


def test_large_n_bandwidth_term_tends_to_twice_the_buffer():
    nbytes = 10 ** 8
    big = cm.ring_allreduce_time(10 ** 6, nbytes, 0.0, BW)
    assert big == pytest.approx(2 * nbytes / BW, rel=1e-5)
    assert big < 2 * nbytes / BW                              # approached from below
    # ...while the latency term keeps growing linearly in N
    assert cm.ring_allreduce_time(1001, 0, ALPHA, BW) == pytest.approx(2000 * ALPHA)


def test_buckets_pay_latency_each_and_bandwidth_once():
    assert cm.bucket_sizes(60, 25) == [25, 25, 10]
    assert cm.bucket_sizes(50, 25) == [25, 25]
    assert cm.bucket_sizes(0, 25) == []
    one = cm.ring_allreduce_time(8, 60e6, ALPHA, BW)
    three = cm.bucketed_allreduce_time(8, 60e6, ALPHA, BW, bucket_bytes=25e6)
    assert three - one == pytest.approx(2 * 2 * 7 * ALPHA)   # two extra rings of 2 (N - 1) steps


def test_gradient_bytes_are_four_per_parameter():
    assert cm.gradient_bytes(124_000_000) == 496_000_000
    assert cm.gradient_bytes(10, bytes_per_value=2) == 20


def test_step_time_overlap():
    assert cm.step_time(1.0, 0.5) == 1.5
    assert cm.step_time(1.0, 0.5, overlap=0.25) == 1.25
    assert cm.step_time(1.0, 0.5, overlap=2 / 3) == 1.0        # fully hidden, never faster than compute


@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_efficiency_monotone_in_n_and_in_0_1(overlap):
    effs = [cm.scaling_efficiency(n, 0.05, 4 * 10 ** 7, 50e-6, BW, overlap=overlap, bucket_bytes=cm.DDP_BUCKET_BYTES)
            for n in range(1, 257)]
    assert effs[0] == 1.0
    assert all(0 < e <= 1 for e in effs)
    assert all(b <= a for a, b in zip(effs, effs[1:]))
    assert effs[-1] < 0.5          # 40 MB per 50 ms step over 10 Gb/s is communication-bound


def test_faster_network_and_more_compute_help():
    slow = cm.scaling_efficiency(64, 0.1, 5e8, 50e-6, 1.25e9)
    fast = cm.scaling_efficiency(64, 0.1, 5e8, 5e-6, 1.25e10)
    longer = cm.scaling_efficiency(64, 1.0, 5e8, 50e-6, 1.25e9)
    assert slow < fast and slow < longer


def test_fit_recovers_known_alpha_and_bandwidth():
    sizes = 4096 * 2.0 ** np.arange(0, 15)                    # 4 KB .. 64 MB
    for n, alpha, bw in [(2, 3e-6, 5e9), (8, 50e-6, 1.25e9)]:
        exact = [cm.ring_allreduce_time(n, s, alpha, bw) for s in sizes]
        a, b = cm.fit_alpha_bandwidth(sizes, exact, n=n)
        assert a == pytest.approx(alpha, rel=1e-6) and b == pytest.approx(bw, rel=1e-6)
        noisy = np.array(exact) * np.random.default_rng(0).uniform(0.97, 1.03, sizes.size)
        a, b = cm.fit_alpha_bandwidth(sizes, noisy, n=n)
        assert a == pytest.approx(alpha, rel=0.2) and b == pytest.approx(bw, rel=0.05)


@pytest.mark.parametrize("call, match", [
    (lambda: cm.ring_allreduce_time(0, 10, ALPHA, BW), "ranks"),
    (lambda: cm.ring_allreduce_time(2.5, 10, ALPHA, BW), "ranks"),
    (lambda: cm.ring_allreduce_time(True, 10, ALPHA, BW), "ranks"),
    (lambda: cm.ring_allreduce_time(2, -1, ALPHA, BW), "nbytes"),
    (lambda: cm.ring_allreduce_time(2, 10, -1e-6, BW), "alpha"),
    (lambda: cm.ring_allreduce_time(2, 10, ALPHA, 0), "bandwidth"),
    (lambda: cm.ring_allreduce_time(2, math.nan, ALPHA, BW), "nbytes"),
    (lambda: cm.gradient_bytes(-3), "num_parameters"),
    (lambda: cm.step_time(0.0, 1.0), "t_compute"),
    (lambda: cm.step_time(1.0, 1.0, overlap=1.5), "overlap"),
    (lambda: cm.bucket_sizes(100, 0), "bucket_bytes"),
    (lambda: cm.fit_alpha_bandwidth([1, 2], [1.0, 2.0], n=1), "n >= 2"),
    (lambda: cm.fit_alpha_bandwidth([1, 1], [1.0, 2.0]), "two different"),
    (lambda: cm.fit_alpha_bandwidth([1, 2, 3], [1.0, 2.0]), "length"),
    (lambda: cm.fit_alpha_bandwidth([1, 2], [1.0, -2.0]), "seconds"),
    (lambda: cm.fit_alpha_bandwidth([1, 2, 3], [3.0, 2.0, 1.0]), "not > 0"),
])
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
