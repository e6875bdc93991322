"""Modules: registration, state_dict, each layer against its formula, gradchecks, masks."""
import math

import numpy as np
import pytest

import minilm
import minilm.nn.functional as F
from minilm import Tensor, gradcheck, nn


def test_module_registers_parameters_and_submodules_by_attribute():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4, generator=np.random.default_rng(0))
            self.blocks = nn.ModuleList([nn.LayerNorm(4), nn.LayerNorm(4)])
            self.scale = nn.Parameter(np.ones(1, np.float32))
            self.not_a_param = np.zeros(3)

    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "fc.weight", "fc.bias", "blocks.0.weight", "blocks.0.bias",
                     "blocks.1.weight", "blocks.1.bias"]
    assert net.num_parameters() == 1 + 12 + 4 + 16
    assert "33 parameters" in repr(net)


def test_tied_parameters_are_listed_once_and_stay_tied_after_loading():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    b.weight = a.weight
    seq = nn.Sequential(a, b)
    assert len(seq.parameters()) == 3
    state = {k: np.full_like(v, 7.0) for k, v in seq.state_dict().items()}
    seq.load_state_dict(state)
    assert seq[1].weight is seq[0].weight and np.all(seq[1].weight.data == 7.0)


def test_state_dict_round_trip_and_strict_errors_name_every_key():
    m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    state = m.state_dict()
    m2 = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    m2.load_state_dict(state)
    for k, v in m2.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    bad = dict(state)
    del bad["0.bias"]
    bad["extra.weight"] = np.zeros(1)
    bad["1.weight"] = np.zeros(5, np.float32)
    before = m2.state_dict()
    with pytest.raises(KeyError) as err:
        m2.load_state_dict(bad)
    msg = str(err.value)
    assert "0.bias" in msg and "extra.weight" in msg and "1.weight" in msg and "(5,)" in msg and "(4,)" in msg
    for k, v in m2.state_dict().items():        # nothing was changed
        np.testing.assert_array_equal(v, before[k])
    missing, unexpected = m2.load_state_dict({k: v for k, v in state.items() if k != "0.bias"}, strict=False)
    assert missing == ["0.bias"] and unexpected == []


def test_train_eval_and_zero_grad_and_freeze():
    m = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    assert all(x.training for x in m.modules())
    m.eval()
    assert not any(x.training for x in m.modules())
    x = Tensor(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(m(x).numpy(), m(x).numpy())
    m.train()
    m(x).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m.requires_grad_(False)
    assert not m(x).requires_grad


def test_linear_and_embedding_formulas(rng):
    lin = nn.Linear(4, 3).double()
    x = rng.standard_normal((2, 5, 4))
    np.testing.assert_allclose(lin(Tensor(x)).numpy(), x @ lin.weight.data.T + lin.bias.data)
    bound = 1 / math.sqrt(4)
    assert np.all(np.abs(lin.weight.data) <= bound)
    assert gradcheck(lambda inp: lin(inp), [Tensor(x, requires_grad=True)])
    lin.zero_grad()
    assert gradcheck(lambda w, b: F.linear(Tensor(x), w, b), [lin.weight, lin.bias])
    emb = nn.Embedding(10, 3)
    ids = np.array([[1, 2], [9, 1]])
    np.testing.assert_array_equal(emb(ids).numpy(), emb.weight.data[ids])
    with pytest.raises(ValueError, match="last dimension 4"):
        lin(Tensor(np.ones((2, 3))))


def test_layernorm_module(rng):
    ln = nn.LayerNorm(6).double()
    ln.weight.data[:] = rng.standard_normal(6)
    ln.bias.data[:] = rng.standard_normal(6)
    x = rng.standard_normal((3, 6))
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * ln.weight.data + ln.bias.data
    np.testing.assert_allclose(ln(Tensor(x)).numpy(), ref, rtol=1e-10)
    assert gradcheck(lambda inp, w, b: ln(inp), [Tensor(x, requires_grad=True), ln.weight, ln.bias])


def test_sinusoidal_encoding_matches_the_formula_and_checks_length():
    table = nn.sinusoidal_table(50, 8)
    pos, i = 7, 2
    assert np.isclose(table[pos, 2 * i], math.sin(pos / 10000 ** (2 * i / 8)), atol=1e-6)
    assert np.isclose(table[pos, 2 * i + 1], math.cos(pos / 10000 ** (2 * i / 8)), atol=1e-6)
    pe = nn.SinusoidalPositionalEncoding(8, dropout=0.0, max_len=50)
    x = Tensor(np.zeros((2, 5, 8), np.float32))
    np.testing.assert_allclose(pe(x).numpy()[1], table[:5])
    with pytest.raises(ValueError, match="length 51 exceeds .*max_len 50"):
        pe(Tensor(np.zeros((1, 51, 8), np.float32)))
    assert nn.sinusoidal_table(10, 7).shape == (10, 7)        # odd d_model works too


def test_learned_positions_check_length():
    lp = nn.LearnedPositionalEmbedding(16, 4)
    assert lp(5).shape == (5, 4)
    np.testing.assert_array_equal(lp(3, offset=2).numpy(), lp.weight.data[2:5])
    with pytest.raises(ValueError, match="exceed .*16"):
        lp(17)


def _mha_reference(m, x, causal, key_mask=None):
    """Multi-head attention written out with NumPy loops over heads."""
    b, t, c = x.shape
    h, d = m.num_heads, m.head_dim
    qkv = x @ m.in_proj.weight.data.T + m.in_proj.bias.data
    q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
    out = np.zeros_like(x)
    for bi in range(b):
        for hi in range(h):
            sl = slice(hi * d, (hi + 1) * d)
            s = q[bi, :, sl] @ k[bi, :, sl].T / math.sqrt(d)
            allowed = np.ones((t, t), bool)
            if causal:
                allowed &= np.tril(allowed)
            if key_mask is not None:
                allowed &= key_mask[bi][None, :].astype(bool)
            s = np.where(allowed, s, -np.inf)
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            out[bi, :, sl] = p @ v[bi, :, sl]
    return out @ m.out_proj.weight.data.T + m.out_proj.bias.data


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_matches_per_head_loops(rng, causal):
    m = nn.MultiHeadAttention(8, 2, causal=causal).double()
    m.in_proj.bias.data[:] = rng.standard_normal(24) * 0.1
    x = rng.standard_normal((2, 5, 8))
    np.testing.assert_allclose(m(Tensor(x)).numpy(), _mha_reference(m, x, causal), rtol=1e-9, atol=1e-12)
    key_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    np.testing.assert_allclose(m(Tensor(x), mask=nn.masks.padding_mask(key_mask, (2, 5), "test")).numpy(),
                               _mha_reference(m, x, causal, key_mask), rtol=1e-9, atol=1e-12)
    out, w = m(Tensor(x), need_weights=True)
    assert w.shape == (2, 2, 5, 5)
    np.testing.assert_allclose(w.numpy().sum(-1), 1.0)


def test_multi_head_attention_gradcheck(rng):
    m = nn.MultiHeadAttention(6, 3, causal=True).double()
    assert {n.split(".")[0] for n, _ in m.named_parameters()} == {"in_proj", "out_proj"}
    x = Tensor(rng.standard_normal((2, 4, 6)), requires_grad=True)
    assert gradcheck(lambda inp, *ps: m(inp), [x] + m.parameters())      # every element


def test_d_model_not_divisible_by_heads_is_named():
    with pytest.raises(ValueError, match="embed_dim=10 .*num_heads=3"):
        nn.MultiHeadAttention(10, 3)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_block_matches_its_formula_and_gradchecks(rng, norm_first):
    blk = nn.TransformerBlock(8, 2, dim_feedforward=16, dropout=0.0, activation="gelu",
                              norm_first=norm_first, causal=True).double()
    x = rng.standard_normal((2, 4, 8))
    ln = lambda z, m: (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-5) * m.weight.data + m.bias.data
    attn = lambda z: _mha_reference(blk.self_attn, z, True)
    ff = lambda z: F.gelu(Tensor(z @ blk.ff.linear1.weight.data.T + blk.ff.linear1.bias.data)).numpy() @ blk.ff.linear2.weight.data.T + blk.ff.linear2.bias.data
    if norm_first:
        h = x + attn(ln(x, blk.norm1))
        ref = h + ff(ln(h, blk.norm2))
    else:
        h = ln(x + attn(x), blk.norm1)
        ref = ln(h + ff(h), blk.norm2)
    np.testing.assert_allclose(blk(Tensor(x)).numpy(), ref, rtol=1e-8, atol=1e-10)
    xt = Tensor(x, requires_grad=True)
    assert gradcheck(lambda inp, *ps: blk(inp), [xt] + blk.parameters())  # every element


def test_causal_block_never_looks_ahead(rng):
    blk = nn.TransformerBlock(8, 2, 16, dropout=0.0, norm_first=True, causal=True).eval()
    x = rng.standard_normal((1, 6, 8)).astype(np.float32)
    base = blk(Tensor(x)).numpy()
    for t in range(5):
        x2 = x.copy()
        x2[0, t + 1:] = rng.standard_normal((5 - t, 8))
        np.testing.assert_allclose(blk(Tensor(x2)).numpy()[0, :t + 1], base[0, :t + 1], atol=1e-6)


def test_padding_never_changes_real_positions(rng):
    blk = nn.TransformerBlock(8, 2, 16, dropout=0.0).eval()
    x = rng.standard_normal((2, 6, 8)).astype(np.float32)
    mask = nn.masks.padding_mask(np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]), (2, 6), "test")
    base = blk(Tensor(x), mask=mask).numpy()
    x2 = x.copy()
    x2[0, 4:] = 100 * rng.standard_normal((2, 8))
    out = blk(Tensor(x2), mask=mask).numpy()
    np.testing.assert_allclose(out[0, :4], base[0, :4], atol=1e-5)


def test_feed_forward_formula(rng):
    ff = nn.FeedForward(4, 8, activation="relu").double()
    x = rng.standard_normal((3, 4))
    h = np.maximum(x @ ff.linear1.weight.data.T + ff.linear1.bias.data, 0)
    np.testing.assert_allclose(ff(Tensor(x)).numpy(), h @ ff.linear2.weight.data.T + ff.linear2.bias.data)
    with pytest.raises(ValueError, match="unknown activation"):
        nn.FeedForward(4, 8, activation="swish")


def test_kv_cache_attention_equals_full_attention(rng):
    m = nn.MultiHeadAttention(8, 2, causal=True).eval()
    x = rng.standard_normal((1, 5, 8)).astype(np.float32)
    full = m(Tensor(x)).numpy()
    cache = nn.KVCache(max_len=5)
    steps = [m(Tensor(x[:, :2]), kv_cache=cache).numpy()]
    for t in range(2, 5):
        steps.append(m(Tensor(x[:, t:t + 1]), kv_cache=cache).numpy())
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    with pytest.raises(ValueError, match="exceed the cache size 5"):
        m(Tensor(x[:, :1]), kv_cache=cache)


def test_kv_cache_keeps_gradients_of_the_current_call(rng):
    m = nn.MultiHeadAttention(4, 2, causal=True).double()
    first = nn.KVCache(max_len=3)
    with minilm.no_grad():
        m(Tensor(rng.standard_normal((1, 2, 4))), kv_cache=first)
    past_k, past_v = first.k[:, :, :2].copy(), first.v[:, :, :2].copy()   # constants from the earlier call
    x2 = Tensor(rng.standard_normal((1, 1, 4)), requires_grad=True)

    def second_step(inp, *params):
        cache = nn.KVCache(max_len=3)
        cache.append(past_k, past_v)
        return m(inp, kv_cache=cache)

    assert gradcheck(second_step, [x2] + m.parameters())                # every element
