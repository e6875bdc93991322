"""The seed article's TransformerModel (minilm/models/transformer.py).

Oracles: the seed's own PyTorch module (built in the test when torch is
installed, and frozen into tests/fixtures/seed_model/seed_fixture.npz by
scripts/make_seed_fixture.py so the comparison always runs), and a
straightforward NumPy forward written below from the state dict.
"""
import importlib.util
import io
import math
import os

import numpy as np
import pytest

import minilm
from minilm.models import TransformerModel, generate_square_subsequent_mask
from minilm.nn.positional import sinusoidal_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "seed_model", "seed_fixture.npz")
SCRIPT = os.path.join(ROOT, "scripts", "make_seed_fixture.py")


def tiny(num_layers=1, dim_feedforward=16, dropout=0.0, seed=0, **kw):
    cfg = dict(vocab_size=11, d_model=8, nhead=2, num_layers=num_layers, dim_feedforward=dim_feedforward,
               dropout=dropout, max_len=32)
    cfg.update(kw)
    return TransformerModel(**cfg, generator=np.random.default_rng(seed))


def to_float64(model):
    """Parameters and the positional table in float64 (for exact comparisons and gradchecks)."""
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    pe = model.pos_encoder
    pe.register_buffer("pe", sinusoidal_table(pe.max_len, pe.d_model, dtype=np.float64), persistent=False)
    return model


def forward_np(model, src, mask=None):
    with minilm.no_grad():
        return model(src, mask).numpy()


# ----- an independent NumPy forward, from the state dict ---------------------------------------
def reference_forward(state, src, nhead, allowed=None, eps=1e-5):
    """embed * sqrt(d) + PE, post-LN encoder layers (ReLU FFN), linear decoder; float64."""
    emb = state["encoder.weight"].astype(np.float64)
    d = emb.shape[1]
    b, t = src.shape
    pos = np.arange(t)[:, None]
    freq = np.exp(-math.log(10000.0) * np.arange(0, d, 2) / d)
    pe = np.zeros((t, d))
    pe[:, 0::2], pe[:, 1::2] = np.sin(pos * freq), np.cos(pos * freq)
    x = emb[src] * math.sqrt(d) + pe

    def ln(z, w, bias):
        mu = z.mean(-1, keepdims=True)
        var = ((z - mu) ** 2).mean(-1, keepdims=True)
        return (z - mu) / np.sqrt(var + eps) * w + bias

    n_layers = len({k.split(".")[2] for k in state if k.startswith("transformer_encoder.layers.")})
    hs = d // nhead
    for i in range(n_layers):
        s = {k.split(f"layers.{i}.", 1)[1]: v.astype(np.float64) for k, v in state.items()
             if k.startswith(f"transformer_encoder.layers.{i}.")}
        qkv = x @ s["self_attn.in_proj_weight"].T + s["self_attn.in_proj_bias"]
        q, k, v = (qkv[..., j * d:(j + 1) * d].reshape(b, t, nhead, hs).transpose(0, 2, 1, 3) for j in range(3))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hs)
        if allowed is not None:
            scores = np.where(allowed, scores, -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        attn = (p @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
        attn = attn @ s["self_attn.out_proj.weight"].T + s["self_attn.out_proj.bias"]
        x = ln(x + attn, s["norm1.weight"], s["norm1.bias"])
        ff = np.maximum(x @ s["linear1.weight"].T + s["linear1.bias"], 0)
        ff = ff @ s["linear2.weight"].T + s["linear2.bias"]
        x = ln(x + ff, s["norm2.weight"], s["norm2.bias"])
    return x @ state["decoder.weight"].T.astype(np.float64) + state["decoder.bias"]


@pytest.mark.parametrize("causal", [False, True])
def test_forward_matches_independent_numpy(causal):
    model = to_float64(tiny(num_layers=2)).eval()
    src = np.random.default_rng(1).integers(0, 11, size=(3, 6))
    mask = generate_square_subsequent_mask(6) if causal else None
    got = forward_np(model, src, mask)
    want = reference_forward(model.seed_state_dict(), src, nhead=2, allowed=mask)
    assert got.shape == (3, 6, 11)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


# ----- the seed's PyTorch module -----------------------------------------------------------------
def load_fixture():
    assert os.path.isfile(FIXTURE), f"the committed fixture {FIXTURE} is missing (scripts/make_seed_fixture.py)"
    data = np.load(FIXTURE, allow_pickle=False)
    state = {k[len("state/"):]: data[k] for k in data.files if k.startswith("state/")}
    vocab, d_model, nhead, num_layers = (int(v) for v in data["config"])
    return data, state, dict(vocab_size=vocab, d_model=d_model, nhead=nhead, num_layers=num_layers)


def test_fixture_outputs_from_committed_seed_weights():
    data, state, cfg = load_fixture()
    assert "pos_encoder.pe" in state and state["pos_encoder.pe"].shape == (5000, 1, cfg["d_model"])
    model = TransformerModel(**cfg, generator=np.random.default_rng(0))
    model.load_state_dict(state)
    model.eval()
    src = data["src"]
    np.testing.assert_allclose(forward_np(model, src), data["logits"], rtol=0, atol=1e-5)
    # PyTorch's float additive causal mask, and our boolean one, give the seed's causal outputs
    np.testing.assert_allclose(forward_np(model, src, data["causal_mask"]), data["logits_causal"],
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(forward_np(model, src, generate_square_subsequent_mask(src.shape[1])),
                               data["logits_causal"], rtol=0, atol=1e-5)
    assert np.abs(data["logits"] - data["logits_causal"]).max() > 1e-3     # the mask matters


def _seed_module(torch_seed, **cfg):
    spec = importlib.util.spec_from_file_location("make_seed_fixture", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script, script.build_seed_model(**cfg, seed=torch_seed)


def test_live_torch_seed_model_weights_and_outputs():
    torch = pytest.importorskip("torch", reason="torch is the live oracle; the fixture test covers its absence")
    cfg = dict(vocab_size=37, d_model=24, nhead=3, num_layers=2, dropout=0.1)
    script, seed = _seed_module(7, **cfg)
    buffer = io.BytesIO()
    torch.save(seed.state_dict(), buffer)                 # exactly what a seed user has on disk
    buffer.seek(0)
    model = TransformerModel(**cfg, generator=np.random.default_rng(0))
    model.load_state_dict(torch.load(buffer))             # torch tensors, read through NumPy
    model.eval()
    src = np.random.default_rng(3).integers(0, 37, size=(2, 9))
    for causal in (False, True):
        want = script.seed_outputs(seed, src, causal)                          # (B, T, V)
        mask = torch.nn.Transformer.generate_square_subsequent_mask(9).numpy() if causal else None
        np.testing.assert_allclose(forward_np(model, src, mask), want, rtol=0, atol=1e-5)

    # and back: our weights in the seed's format load into the PyTorch module (strict) and agree
    ours = TransformerModel(**cfg, generator=np.random.default_rng(5)).eval()
    _, other = _seed_module(8, **cfg)
    other.load_state_dict({k: torch.as_tensor(v) for k, v in ours.seed_state_dict().items()}, strict=True)
    np.testing.assert_allclose(script.seed_outputs(other, src, True),
                               forward_np(ours, src, generate_square_subsequent_mask(9)), rtol=0, atol=1e-5)


def test_seed_names_map_to_the_state_dict_names():
    _, state, cfg = load_fixture()
    model = TransformerModel(**cfg)
    assert set(model.seed_state_dict()) == set(state)
    ours = {k.replace(".in_proj_", ".in_proj.").replace(".linear", ".ff.linear") for k in state} - {"pos_encoder.pe"}
    assert set(model.state_dict()) == ours
    assert "transformer_encoder.layers.1.self_attn.in_proj_weight" in state


# ----- behaviour ---------------------------------------------------------------------------------
def test_gradcheck_whole_model_float64():
    """Every element of every parameter: two heads of size 2, so a bug in one head shows."""
    model = to_float64(tiny(num_layers=1, dim_feedforward=6, d_model=4)).train()     # dropout 0: deterministic
    src = np.array([[1, 4, 9, 2], [0, 10, 3, 3]])
    mask = generate_square_subsequent_mask(4)
    params = model.parameters()
    assert minilm.gradcheck(lambda *ps: model(src, mask), params)


def test_causal_mask_keeps_the_past_independent_of_the_future():
    model = tiny(num_layers=2).eval()
    rng = np.random.default_rng(2)
    src = rng.integers(0, 11, size=(2, 8))
    causal = generate_square_subsequent_mask(8)
    base = forward_np(model, src, causal)
    for t in range(7):
        changed = src.copy()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1 + rng.integers(0, 9, size=changed[:, t + 1:].shape)) % 11
        out = forward_np(model, changed, causal)
        np.testing.assert_array_equal(out[:, :t + 1], base[:, :t + 1])
        assert np.abs(out[:, t + 1:] - base[:, t + 1:]).max() > 0
    # without the mask the future does leak into the past
    assert np.abs(forward_np(model, changed) - forward_np(model, src))[:, 0].max() > 0


def test_float_and_bool_masks_agree_and_padding_mask_works():
    model = tiny().eval()
    src = np.random.default_rng(4).integers(0, 11, size=(2, 5))
    float_mask = np.triu(np.full((5, 5), -np.inf, dtype=np.float32), k=1)
    np.testing.assert_array_equal(forward_np(model, src, float_mask),
                                  forward_np(model, src, generate_square_subsequent_mask(5)))
    # attention_mask (B, T): the padded tail never changes the real positions
    keys = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    other = src.copy()
    other[0, 3:] = (other[0, 3:] + 5) % 11
    with minilm.no_grad():
        a = model(src, attention_mask=keys).numpy()
        b = model(other, attention_mask=keys).numpy()
    np.testing.assert_array_equal(a[0, :3], b[0, :3])


def test_parameter_count_matches_formula():
    v, d, layers, ff = 11, 8, 3, 16
    model = tiny(num_layers=layers, dim_feedforward=ff)
    per_layer = (3 * d * d + 3 * d) + (d * d + d) + (ff * d + ff) + (d * ff + d) + 4 * d
    assert model.num_parameters() == v * d + layers * per_layer + d * v + v
    # the seed's defaults
    big = TransformerModel(100)
    layers = big.transformer_encoder.layers
    assert len(layers) == 6 and layers[0].ff.linear1.out_features == 2048
    assert big.d_model == 512 and big.nhead == 8 and big.pos_encoder.max_len == 5000


def test_init_follows_the_seed():
    model = TransformerModel(50, d_model=16, nhead=4, num_layers=1, generator=np.random.default_rng(0))
    for w in (model.encoder.weight.data, model.decoder.weight.data):
        assert np.abs(w).max() <= 0.1 and np.abs(w).max() > 0.09
    assert not model.decoder.bias.data.any()
    same = TransformerModel(50, d_model=16, nhead=4, num_layers=1, generator=np.random.default_rng(0))
    for (name, a), (_, b) in zip(model.state_dict().items(), same.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_eval_disables_dropout():
    model = tiny(dropout=0.5, num_layers=2)
    src = np.random.default_rng(5).integers(0, 11, size=(2, 6))
    model.train()
    assert np.abs(forward_np(model, src) - forward_np(model, src)).max() > 0
    model.eval()
    np.testing.assert_array_equal(forward_np(model, src), forward_np(model, src))


# ----- errors ------------------------------------------------------------------------------------
def test_bad_configuration_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="d_model=10 is not divisible by nhead=4"):
        TransformerModel(11, d_model=10, nhead=4)
    model = tiny(max_len=6)
    with pytest.raises(ValueError, match="sequence length 7 exceeds .*max_len 6"):
        model(np.zeros((1, 7), dtype=np.int64))
    with pytest.raises(IndexError, match="11"):
        model(np.array([[1, 11]]))
    with pytest.raises(IndexError, match="-1"):
        model(np.array([[-1, 2]]))
    with pytest.raises(TypeError, match="integer token ids"):
        model(np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"shape \(batch, time\)"):
        model(np.array([1, 2]))
    with pytest.raises(ValueError, match=r"src_mask must have shape \(T, T\)"):
        model(np.array([[1, 2, 3]]), np.ones((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="0.5"):
        model(np.array([[1, 2]]), np.array([[0.0, 0.5], [0.0, 0.0]]))


def _changed_keys(model, snapshot):
    return sorted(k for k, v in model.state_dict().items() if not np.array_equal(v, snapshot[k]))


def test_bad_state_dicts_name_the_key():
    model = tiny()
    before = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}     # snapshot first
    # the well-formed keys carry *different* values, so loading any of them would show
    other = {k: np.asarray(v) + 1 for k, v in before.items()}
    missing = dict(other)
    del missing["decoder.bias"]
    with pytest.raises(KeyError, match="missing keys: decoder.bias"):
        model.load_state_dict(missing)
    extra = dict(other, **{"decoder.scale": np.ones(3, np.float32)})
    with pytest.raises(KeyError, match="unexpected keys: decoder.scale"):
        model.load_state_dict(extra)
    shaped = dict(other, **{"encoder.weight": np.zeros((12, 8), np.float32)})
    with pytest.raises(KeyError, match=r"encoder.weight: checkpoint \(12, 8\) vs model \(11, 8\)"):
        model.load_state_dict(shaped)
    assert _changed_keys(model, before) == []                                   # nothing half-loaded
    # the check is not vacuous: a partial load (strict=False, one key) is seen
    model.load_state_dict({"decoder.bias": other["decoder.bias"]}, strict=False)
    assert _changed_keys(model, before) == ["decoder.bias"]
    # the seed's pe buffer: right shape and values are accepted, anything else named
    seed_like = model.seed_state_dict()
    model.load_state_dict(seed_like)
    wrong_shape = dict(seed_like, **{"pos_encoder.pe": seed_like["pos_encoder.pe"][:, 0, :]})
    with pytest.raises(KeyError, match="pos_encoder.pe"):
        model.load_state_dict(wrong_shape)
    pe = seed_like["pos_encoder.pe"]
    swapped = pe.copy()
    swapped[:, 0, 0::2], swapped[:, 0, 1::2] = pe[:, 0, 1::2], pe[:, 0, 0::2]      # cos where sin belongs
    with pytest.raises(ValueError, match="not the sinusoidal table"):
        model.load_state_dict(dict(seed_like, **{"pos_encoder.pe": swapped}))


def test_own_state_dict_and_seed_state_dict_both_load_back():
    """minilm's own names pass through unchanged; the seed's names are mapped (never both at once)."""
    model = tiny(num_layers=2)
    src = np.random.default_rng(2).integers(0, 11, size=(2, 5))
    want = forward_np(model.eval(), src, None)
    for state in (model.state_dict(), model.seed_state_dict()):
        other = tiny(num_layers=2, seed=7).eval()
        other.load_state_dict(state)
        np.testing.assert_array_equal(forward_np(other, src, None), want)
