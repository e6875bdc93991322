"""The MPI-free parts of data parallelism: buckets, flatten/unflatten, sharding, loss weights, the math."""
import subprocess
import sys

import numpy as np
import pytest

from minilm.distributed import (bucket_parameters, config_digest, flatten_into, shard_batch, shard_loss_scale,
                                unflatten)
from minilm.distributed import comm as dist_comm
from minilm.models import GPT, GPTConfig
from minilm.nn import Parameter
from minilm.optim import clip_grad_norm_


def params(*sizes):
    return [Parameter(np.full(size, float(i), dtype=np.float32)) for i, size in enumerate(sizes)]


def test_buckets_take_parameters_last_first_and_respect_the_cap():
    ps = params(100, 200, 300, 50, 400)               # float32: 400, 800, 1200, 200, 1600 bytes
    cap_mb = 2000 / 2 ** 20
    buckets = bucket_parameters(ps, cap_mb)
    order = [p for b in buckets for p in b.params]
    assert [id(p) for p in order] == [id(p) for p in reversed(ps)]
    assert [[p.data.size for p in b.params] for b in buckets] == [[400, 50], [300, 200], [100]]   # 1800, 2000, 400 bytes
    for b in buckets:
        assert b.nbytes <= 2000 and b.buffer.dtype == np.float32 and b.buffer.flags.c_contiguous
    assert [b.index for b in buckets] == [0, 1, 2]


def test_a_parameter_larger_than_the_cap_gets_its_own_bucket():
    ps = params(10, 1000, 10)
    buckets = bucket_parameters(ps, 100 / 2 ** 20)
    assert [[p.data.size for p in b.params] for b in buckets] == [[10], [1000], [10]]


def test_a_large_cap_gives_one_bucket_and_frozen_parameters_are_left_out():
    ps = params(3, 4, 5)
    ps[1].requires_grad = False
    (bucket,) = bucket_parameters(ps, 25.0)
    assert [p.data.size for p in bucket.params] == [5, 3]
    assert bucket.offsets == [0, 5] and bucket.numel == 8


def test_flatten_unflatten_round_trip_with_shapes_and_none():
    rng = np.random.default_rng(0)
    ps = [Parameter(rng.normal(size=s).astype(np.float32)) for s in [(2, 3), (4,), (3, 1, 2)]]
    (bucket,) = bucket_parameters(ps, 1.0)
    grads = [rng.normal(size=p.shape).astype(np.float32) for p in bucket.params]
    flat = flatten_into(bucket, grads)
    assert flat is bucket.buffer and flat.shape == (6 + 4 + 6,)
    back = unflatten(bucket)
    for g, b, p in zip(grads, back, bucket.params):
        np.testing.assert_array_equal(g, b)
        assert b.shape == p.shape and b.dtype == p.data.dtype
        assert not np.shares_memory(b, bucket.buffer)        # the buffer is reused next step
    grads[1] = None                                          # no gradient: zeros in its place
    flatten_into(bucket, grads)
    np.testing.assert_array_equal(unflatten(bucket)[1], 0.0)


def test_bucket_errors_name_the_problem():
    with pytest.raises(ValueError, match="bucket_cap_mb must be a positive number"):
        bucket_parameters(params(3), 0)
    p = params(3)[0]
    with pytest.raises(ValueError, match="appears twice"):
        bucket_parameters([p, p])
    (bucket,) = bucket_parameters(params(2, 3))
    with pytest.raises(ValueError, match="holds 2 parameters, got 1"):
        flatten_into(bucket, [np.zeros(2)])
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        flatten_into(bucket, [np.zeros(4), np.zeros(2)])


def test_model_buckets_put_the_last_layers_first():
    model = GPT(GPTConfig.preset("nano", vocab_size=16, n_layer=2, dropout=0.0))
    names = {id(p): n for n, p in model.named_parameters()}
    buckets = bucket_parameters(model.parameters(), 4096 / 2 ** 20)
    assert len(buckets) > 3
    first, last = [names[id(p)] for p in buckets[0].params], [names[id(p)] for p in buckets[-1].params]
    assert "ln_f.bias" in first and "wte.weight" in last
    assert sum(len(b.params) for b in buckets) == len(list(model.parameters()))


def test_shard_batch_splits_every_array_the_same_way():
    x = np.arange(8 * 3).reshape(8, 3)
    y = np.arange(8)
    parts = [shard_batch({"x": x, "y": y}, r, 4) for r in range(4)]
    np.testing.assert_array_equal(np.concatenate([p["x"] for p in parts]), x)
    np.testing.assert_array_equal(parts[2]["y"], [4, 5])
    a, b = shard_batch((x, y), 1, 2)
    np.testing.assert_array_equal(a, x[4:])
    np.testing.assert_array_equal(b, y[4:])
    np.testing.assert_array_equal(shard_batch(x, 0, 1), x)


def test_shard_batch_errors():
    with pytest.raises(ValueError, match="global batch size 6 is not divisible by the world size 4"):
        shard_batch(np.zeros((6, 2)), 0, 4)
    with pytest.raises(ValueError, match="share the batch size"):
        shard_batch((np.zeros((4, 2)), np.zeros(2)), 0, 2)
    with pytest.raises(ValueError, match="rank 2 is outside 0..1"):
        shard_batch(np.zeros((4, 2)), 2, 2)


def test_shard_loss_scale_turns_shard_means_into_the_global_mean():
    rng = np.random.default_rng(3)
    losses = rng.random(20)                        # per-token losses of the counted tokens
    shards = [losses[:3], losses[3:12], losses[12:]]   # uneven counts, as masked positions are
    scaled = [shard_loss_scale(len(s), len(losses), 3) * s.mean() for s in shards]
    assert np.mean(scaled) == pytest.approx(losses.mean(), rel=1e-12)
    with pytest.raises(ValueError, match="nothing to average"):
        shard_loss_scale(0, 0, 2)


def test_averaged_shard_gradients_are_the_full_batch_gradient_and_clip_the_same():
    """What DDP relies on: mean over ranks of the shards' grads == the global batch's grad, so the ordinary
    clip_grad_norm_ on the averaged grads is the global norm (no extra communication)."""
    config = GPTConfig.preset("nano", vocab_size=16, n_layer=2, dropout=0.0)
    idx = np.random.default_rng(2).integers(0, 16, (4, 9))
    x, y = idx[:, :-1], idx[:, 1:]

    def grads(xb, yb):
        model = GPT(config, generator=np.random.default_rng(7))
        model(xb, yb)[1].backward()
        return model, [p.grad for p in model.parameters()]

    full_model, full = grads(x, y)
    shard_grads = [grads(*shard_batch((x, y), r, 2))[1] for r in range(2)]
    avg_model = GPT(config, generator=np.random.default_rng(7))
    for p, g0, g1 in zip(avg_model.parameters(), *shard_grads):
        p.grad = (g0 + g1) / np.float32(2)
    for p, q in zip(avg_model.parameters(), full_model.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6)
    norm_avg = clip_grad_norm_(avg_model.parameters(), 0.1)
    norm_full = clip_grad_norm_(full_model.parameters(), 0.1)
    assert norm_full > 0.1                                  # clipping acts
    assert norm_avg == pytest.approx(norm_full, rel=1e-5)
    for p, q in zip(avg_model.parameters(), full_model.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6)


def test_config_digest_is_canonical_and_sensitive():
    a = GPTConfig.preset("nano", vocab_size=16)
    assert config_digest(a) == config_digest(GPTConfig.preset("nano", vocab_size=16))
    assert config_digest({"x": 1, "y": 2}) == config_digest({"y": 2, "x": 1})
    assert config_digest(a) != config_digest(GPTConfig.preset("nano", vocab_size=17))
    with pytest.raises(TypeError, match="to_dict"):
        config_digest([1, 2])


def test_without_mpi4py_the_package_imports_and_use_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)          # as if it were not installed
    with pytest.raises(RuntimeError, match=r'pip install "minilm\[mpi\]"'):
        dist_comm.world()
    code = ("import sys; sys.modules['mpi4py'] = None; import minilm.distributed, minilm.distributed.ddp, "
            "minilm.distributed.comm, minilm.distributed.buckets; print('imported')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "imported" in run.stdout, run.stderr


def test_hooks_are_registered_only_with_overlap():
    """A stand-in communicator (world of 1, no MPI) is enough to check the set-up, not the reductions."""

    class OneRank:
        def Get_size(self):
            return 1

        def Get_rank(self):
            return 0

        def allgather(self, value):
            return [value]

        def Bcast(self, array, root=0):
            pass

    from minilm.distributed import DistributedDataParallel
    model = GPT(GPTConfig.preset("nano", vocab_size=16, n_layer=1, dropout=0.0))
    ddp = DistributedDataParallel(model, OneRank(), bucket_cap_mb=0.01, overlap=False)
    assert not any(p._post_accumulate_grad_hooks for p in model.parameters())
    ddp = DistributedDataParallel(model, OneRank(), bucket_cap_mb=0.01, overlap=True)
    assert all(len(p._post_accumulate_grad_hooks) == 1 for p in model.parameters())
    assert ddp.bytes_per_step == 4 * sum(p.data.size for p in model.parameters())
    ddp.remove_hooks()
    assert not any(p._post_accumulate_grad_hooks for p in model.parameters())
