"""minilm.data.ar_batches: shifted windows, exact resume, deterministic evaluation batches, clear size errors."""

import json

import numpy as np
import pytest

from minilm.data import ARBatcher, iter_eval_batches


def test_windows_are_real_and_shifted_by_one():
    tokens = np.arange(1000, dtype=np.uint16)  # the value of a token is its position
    b = ARBatcher(tokens, seq_len=16, batch_size=8, rng=np.random.default_rng(0))
    x, y = b.next_batch()
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == np.int64
    assert np.array_equal(y[:, :-1], x[:, 1:])  # targets are inputs shifted left by one
    assert np.array_equal(y, x + 1)  # each row is a consecutive window of the corpus
    assert x.min() >= 0 and y.max() <= 999


def test_every_start_position_is_reachable():
    tokens = np.arange(12, dtype=np.int32)
    b = ARBatcher(tokens, seq_len=4, batch_size=64, rng=np.random.default_rng(1))
    starts = set()
    for _ in range(20):
        x, _ = b.next_batch()
        starts.update(x[:, 0].tolist())
    assert starts == set(range(12 - 4))  # 0..7: the last window ends on the last token


def test_exactly_seq_len_plus_one_tokens():
    x, y = ARBatcher(np.array([5, 6, 7]), seq_len=2, batch_size=3, rng=np.random.default_rng(0)).next_batch()
    assert x.tolist() == [[5, 6]] * 3 and y.tolist() == [[6, 7]] * 3


def test_resume_is_exact_through_json():
    tokens = np.random.default_rng(7).integers(0, 500, size=5000).astype(np.uint16)
    a = ARBatcher(tokens, 32, 4, np.random.default_rng(123))
    for _ in range(3):
        a.next_batch()
    saved = json.loads(json.dumps(a.state_dict()))  # what a checkpoint would store
    expected = [a.next_batch() for _ in range(3)]

    b = ARBatcher(tokens, 32, 4, np.random.default_rng(999))  # a different seed: the state must override it
    b.load_state_dict(saved)
    for (ex, ey), (gx, gy) in zip(expected, (b.next_batch() for _ in range(3))):
        assert np.array_equal(ex, gx) and np.array_equal(ey, gy)

    with pytest.raises(ValueError, match="seq_len=32.*seq_len=16"):
        ARBatcher(tokens, 16, 4, np.random.default_rng(0)).load_state_dict(saved)
    with pytest.raises(ValueError, match="PCG64.*MT19937"):
        ARBatcher(tokens, 32, 4, np.random.Generator(np.random.MT19937(0))).load_state_dict(saved)


def test_size_errors_name_the_sizes():
    with pytest.raises(ValueError, match=r"corpus too short: 10 tokens, but one window needs seq_len \+ 1 = 11"):
        ARBatcher(np.arange(10), seq_len=10, batch_size=2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="empty"):
        ARBatcher(np.array([], dtype=np.int64), seq_len=4, batch_size=2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="1-D"):
        ARBatcher(np.zeros((4, 4), int), seq_len=2, batch_size=2, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="integer ids"):
        ARBatcher(np.zeros(10), seq_len=2, batch_size=2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="seq_len"):
        ARBatcher(np.arange(10), seq_len=0, batch_size=2, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        ARBatcher(np.arange(10), seq_len=2, batch_size=2, rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match="corpus too short"):
        next(iter_eval_batches(np.arange(3), seq_len=3, batch_size=1))


def test_eval_batches_cover_the_array_in_order():
    tokens = np.arange(103, dtype=np.uint16)
    batches = list(iter_eval_batches(tokens, seq_len=10, batch_size=4))
    assert [x.shape for x, _ in batches] == [(4, 10), (4, 10), (2, 10)]  # 10 windows: (103 - 1) // 10
    xs = np.concatenate([x for x, _ in batches])
    ys = np.concatenate([y for _, y in batches])
    assert np.array_equal(xs.ravel(), np.arange(100)) and np.array_equal(ys.ravel(), np.arange(1, 101))
    again = list(iter_eval_batches(tokens, 10, 4))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again))
    assert len(list(iter_eval_batches(tokens, 10, 4, max_batches=2))) == 2


def test_a_limited_evaluation_spreads_its_windows_over_the_whole_split():
    tokens = np.arange(1001, dtype=np.uint16)                     # 100 windows of 10
    batches = list(iter_eval_batches(tokens, seq_len=10, batch_size=4, max_batches=2))
    firsts = np.concatenate([x[:, 0] for x, _ in batches]) // 10  # window numbers
    assert firsts.tolist() == [0, 14, 28, 42, 57, 71, 85, 99]     # evenly spaced, first and last included
    for x, y in batches:
        assert np.array_equal(y[:, :-1], x[:, 1:])                # still next-token pairs
    assert len(list(iter_eval_batches(tokens, 10, 4, max_batches=100))) == 25   # more than exist: all
