"""GPT (minilm/models/gpt.py, gpt_config.py): forward against an independent NumPy GPT-2,
gradients, causality, the KV cache, weight tying, sizes and FLOPs, and Hugging Face checkpoints."""
import json
import math

import numpy as np
import pytest

import minilm
from minilm.io.safetensors import load_file, save_file
from minilm.models import GPT, GPTConfig, load_hf_gpt2, save_hf_gpt2
from minilm.models import hf
from minilm.nn import Parameter


def tiny_config(**kw):
    values = dict(vocab_size=13, n_layer=2, n_head=2, n_embd=8, block_size=12, dropout=0.0)
    values.update(kw)
    return GPTConfig(**values)


def tiny(seed=0, **kw):
    return GPT(tiny_config(**kw), generator=np.random.default_rng(seed))


def to_float64(model):
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def logits_of(model, idx, **kw):
    with minilm.no_grad():
        return model(idx, **kw).numpy()


# ----- an independent NumPy GPT-2 (picoGPT's shape), from Hugging Face-named weights ------------
def reference_gpt2(state, idx, n_head, eps=1e-5, approximate_gelu=True):
    """Conv1D weights are (in, out): x @ W + b. The LM head is wte^T."""
    s = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
    wte, wpe = s["transformer.wte.weight"], s["transformer.wpe.weight"]
    b, t = idx.shape
    c = wte.shape[1]
    hs = c // n_head
    x = wte[idx] + wpe[:t]

    bias = lambda name: s.get(name + ".bias", 0.0)                   # bias=False models have none

    def ln(z, name):
        mu = z.mean(-1, keepdims=True)
        var = ((z - mu) ** 2).mean(-1, keepdims=True)
        return (z - mu) / np.sqrt(var + eps) * s[name + ".weight"] + bias(name)

    def gelu(z):
        if approximate_gelu:
            return 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))
        return 0.5 * z * (1 + np.frompyfunc(math.erf, 1, 1)(z / math.sqrt(2)).astype(np.float64))

    causal = np.tril(np.ones((t, t), dtype=bool))
    layer = 0
    while f"transformer.h.{layer}.ln_1.weight" in s:
        p = f"transformer.h.{layer}."
        h = ln(x, p + "ln_1")
        qkv = h @ s[p + "attn.c_attn.weight"] + bias(p + "attn.c_attn")
        q, k, v = (qkv[..., i * c:(i + 1) * c].reshape(b, t, n_head, hs).transpose(0, 2, 1, 3) for i in range(3))
        scores = np.where(causal, q @ k.transpose(0, 1, 3, 2) / math.sqrt(hs), -np.inf)
        w = np.exp(scores - scores.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        a = (w @ v).transpose(0, 2, 1, 3).reshape(b, t, c)
        x = x + a @ s[p + "attn.c_proj.weight"] + bias(p + "attn.c_proj")
        h = ln(x, p + "ln_2")
        m = gelu(h @ s[p + "mlp.c_fc.weight"] + bias(p + "mlp.c_fc"))
        x = x + m @ s[p + "mlp.c_proj.weight"] + bias(p + "mlp.c_proj")
        layer += 1
    return ln(x, "transformer.ln_f") @ wte.T


@pytest.mark.parametrize("activation,bias", [("gelu_tanh", True), ("gelu", True), ("gelu_tanh", False)])
def test_forward_matches_independent_numpy_gpt2(activation, bias):
    model = to_float64(tiny(activation=activation, bias=bias)).eval()
    if not bias:
        assert not any(name.endswith(".bias") for name in model.state_dict())
    idx = np.random.default_rng(1).integers(0, 13, size=(3, 7))
    want = reference_gpt2(hf.gpt2_state_dict_to_hf(model.state_dict()), idx, n_head=2, approximate_gelu=activation == "gelu_tanh")
    got = logits_of(model, idx)
    assert got.shape == (3, 7, 13)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_loss_is_mean_cross_entropy_of_the_targets_with_ignore_index():
    model = tiny().eval()
    rng = np.random.default_rng(2)
    idx, targets = rng.integers(0, 13, size=(2, 6)), rng.integers(0, 13, size=(2, 6))
    targets[0, :2] = -100
    logits, loss = model(idx, targets)
    z = logits.numpy().astype(np.float64)
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    keep = targets != -100
    want = -logp[keep, targets[keep]].mean()
    assert loss.item() == pytest.approx(want, rel=1e-5)


def smallest(**kw):
    """Two layers, two heads of size 2: small enough to gradcheck every parameter element."""
    return to_float64(tiny(n_layer=2, n_embd=4, vocab_size=7, block_size=4, **kw))


@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_whole_model_float64_every_element(bias):
    """Every element of every parameter (about 500), so a bug confined to one head or row shows."""
    model = smallest(bias=bias).train()
    idx = np.array([[1, 5, 6, 0], [6, 6, 3, 2]])
    targets = np.array([[5, 6, 0, 4], [6, 3, -100, 1]])
    assert minilm.gradcheck(lambda *ps: model(idx, targets)[1], model.parameters())
    assert minilm.gradcheck(lambda *ps: model(idx), model.parameters(), seed=1)


def test_changing_a_later_token_never_changes_earlier_logits():
    model = tiny().eval()
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 13, size=(2, 10))
    base = logits_of(model, idx)
    for t in range(9):
        changed = idx.copy()
        changed[:, t + 1] = (changed[:, t + 1] + 1 + rng.integers(0, 11)) % 13
        out = logits_of(model, changed)
        np.testing.assert_array_equal(out[:, :t + 1], base[:, :t + 1])
        assert np.abs(out[:, t + 1] - base[:, t + 1]).max() > 0


def test_kv_cache_matches_the_full_forward():
    model = tiny(n_layer=3, block_size=16).eval()
    idx = np.random.default_rng(4).integers(0, 13, size=(2, 11))
    full = logits_of(model, idx)
    caches = model.new_kv_caches()
    steps = [logits_of(model, idx[:, i:i + 1], kv_caches=caches) for i in range(11)]   # token by token
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=0, atol=1e-5)
    assert caches[0].length == 11
    caches = model.new_kv_caches()
    prefill = logits_of(model, idx[:, :6], kv_caches=caches)                           # a prompt, then one by one
    rest = [logits_of(model, idx[:, i:i + 1], kv_caches=caches) for i in range(6, 11)]
    np.testing.assert_allclose(np.concatenate([prefill, *rest], axis=1), full, rtol=0, atol=1e-5)


def test_kv_cache_step_passes_gradient_to_the_new_token():
    model = smallest().train()
    idx = np.array([[3, 1, 4, 1]])
    caches = model.new_kv_caches()
    with minilm.no_grad():
        model(idx[:, :3], kv_caches=caches)

    def step(*ps):
        saved = [(c.k.copy(), c.v.copy(), c.length) for c in caches]
        out = model(idx[:, 3:], kv_caches=caches)
        for c, (k, v, n) in zip(caches, saved):                  # each evaluation starts from the same cache
            c.k[...], c.v[...], c.length = k, v, n
        return out
    assert minilm.gradcheck(step, model.parameters())


def test_context_and_cache_limits():
    model = tiny(block_size=5).eval()
    with pytest.raises(ValueError, match="0 cached \\+ 6 new tokens exceed block_size 5"):
        model(np.zeros((1, 6), dtype=np.int64))
    caches = model.new_kv_caches()
    logits_of(model, np.zeros((1, 4), dtype=np.int64), kv_caches=caches)
    with pytest.raises(ValueError, match="4 cached \\+ 2 new tokens exceed block_size 5"):
        model(np.zeros((1, 2), dtype=np.int64), kv_caches=caches)
    with pytest.raises(ValueError, match="kv_caches has 1 entries, the model has 2 layers"):
        model(np.zeros((1, 1), dtype=np.int64), kv_caches=caches[:1])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="n_embd=10 is not divisible by n_head=3"):
        GPTConfig(vocab_size=5, n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="vocab_size must be a positive int"):
        GPTConfig(vocab_size=0)
    model = tiny()
    with pytest.raises(IndexError, match="idx contains 13, outside the vocabulary \\[0, 13\\)"):
        model(np.array([[1, 13]]))
    with pytest.raises(IndexError, match="idx contains -2"):
        model(np.array([[-2, 1]]))
    with pytest.raises(TypeError, match="integer token ids"):
        model(np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="targets of shape \\(1, 3\\) must match idx \\(1, 2\\)"):
        model(np.array([[1, 2]]), np.array([[1, 2, 3]]))
    with pytest.raises(TypeError, match="expected a GPTConfig"):
        GPT({"vocab_size": 5})


def test_bad_state_dicts_name_the_key():
    model = tiny()
    good = model.state_dict()
    missing = {k: v for k, v in good.items() if k != "blocks.1.ff.linear1.bias"}
    with pytest.raises(KeyError, match="missing keys: blocks.1.ff.linear1.bias"):
        model.load_state_dict(missing)
    with pytest.raises(KeyError, match="unexpected keys: blocks.0.self_attn.rotary"):
        model.load_state_dict(dict(good, **{"blocks.0.self_attn.rotary": np.zeros(2, np.float32)}))
    bad = dict(good, **{"blocks.0.self_attn.in_proj.weight": good["blocks.0.self_attn.in_proj.weight"].T})
    with pytest.raises(KeyError, match=r"blocks.0.self_attn.in_proj.weight: checkpoint \(8, 24\) vs model \(24, 8\)"):
        model.load_state_dict(bad)
    # Hugging Face names: a tied copy of the head is accepted; an untied one is refused
    hf_state = hf.gpt2_state_dict_to_hf(good)
    model.load_state_dict(dict(hf_state, **{"lm_head.weight": good["wte.weight"].copy()}))
    with pytest.raises(ValueError, match="'lm_head.weight' differs from 'transformer.wte.weight'"):
        model.load_state_dict(dict(hf_state, **{"lm_head.weight": good["wte.weight"] + 1}))
    with pytest.raises(KeyError, match="missing keys: blocks.1.norm2.bias"):
        model.load_state_dict({k: v for k, v in hf_state.items() if k != "transformer.h.1.ln_2.bias"})
    bare = {k.removeprefix("transformer."): v for k, v in hf_state.items()}     # GPT2Model names, as on the hub
    with pytest.raises(ValueError, match="'lm_head.weight' differs from 'wte.weight'"):
        model.load_state_dict(dict(bare, **{"lm_head.weight": good["wte.weight"] + 1}))


def test_weight_tying_is_one_parameter_and_gradients_add_up():
    model = to_float64(tiny()).eval()
    wte = model.wte.weight
    assert model.lm_head.weight is wte
    assert "lm_head.weight" not in model.state_dict()
    idx, targets = np.array([[1, 2, 3, 4]]), np.array([[2, 3, 4, 5]])
    model(idx, targets)[1].backward()
    tied_grad = wte.grad.copy()

    # untie: the head gets its own copy; the two separate gradients must add up to the tied one
    model.zero_grad()
    head = Parameter(wte.data.copy())
    model.lm_head.weight = head
    model(idx, targets)[1].backward()
    assert np.abs(head.grad).max() > 0 and np.abs(wte.grad).max() > 0
    np.testing.assert_allclose(tied_grad, wte.grad + head.grad, rtol=1e-12, atol=1e-14)


def test_parameter_counts_match_the_formula():
    for cfg in (tiny_config(), tiny_config(bias=False), GPTConfig.preset("nano", vocab_size=65),
                GPTConfig.preset("baby", vocab_size=256, bias=False)):
        model = GPT(cfg, generator=np.random.default_rng(0))
        assert model.num_parameters(non_embedding=False) == cfg.num_parameters(non_embedding=False)
        assert model.num_parameters() == cfg.num_parameters() == \
            model.num_parameters(non_embedding=False) - cfg.block_size * cfg.n_embd
    # OpenAI's GPT-2 small, by the formula only (building it would take 0.5 GB)
    gpt2 = GPTConfig.preset("gpt2")
    assert gpt2.num_parameters(non_embedding=False) == 124_439_808
    assert gpt2.flops_per_token() == 6 * 123_653_376 + 12 * 12 * 768 * 1024
    assert gpt2.flops_per_token(seq_len=1, training=False) == 2 * 123_653_376 + 4 * 12 * 768
    assert "124,439,808" in gpt2.report()


def test_presets_and_configs():
    micro = GPTConfig.preset("baby", vocab_size=65)
    assert (micro.n_layer, micro.n_head, micro.n_embd, micro.block_size) == (4, 4, 128, 64)
    with pytest.raises(ValueError, match="unknown preset 'micro'"):
        GPTConfig.preset("micro", vocab_size=65)                      # removed: it was "baby" twice
    assert GPTConfig.preset("gpt2").vocab_size == 50257
    with pytest.raises(ValueError, match="pass vocab_size"):
        GPTConfig.preset("small")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        GPTConfig.preset("huge", vocab_size=5)
    assert GPTConfig.from_dict(micro.to_dict()) == micro
    assert hf.gpt_config_from_hf(hf.gpt_config_to_hf(micro)) == micro
    with pytest.raises(ValueError, match="activation_function 'relu'"):
        hf.gpt_config_from_hf(dict(hf.gpt_config_to_hf(micro), activation_function="relu"))


def test_init_is_gpt2_style_and_seeded():
    cfg = GPTConfig(vocab_size=300, n_layer=8, n_head=4, n_embd=64, block_size=32)
    model = GPT(cfg, generator=np.random.default_rng(0))
    block = model.blocks[0]
    assert model.wte.weight.data.std() == pytest.approx(0.02, rel=0.05)
    assert block.self_attn.in_proj.weight.data.std() == pytest.approx(0.02, rel=0.05)
    for proj in (block.self_attn.out_proj, block.ff.linear2):
        assert proj.weight.data.std() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    for name, p in model.named_parameters():
        if name.endswith(".bias"):
            assert not p.data.any(), name
    again = GPT(cfg, generator=np.random.default_rng(0)).state_dict()
    other = GPT(cfg, generator=np.random.default_rng(1)).state_dict()
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, again[name], err_msg=name)
    assert not np.array_equal(model.state_dict()["wte.weight"], other["wte.weight"])


def test_eval_disables_dropout():
    model = tiny(dropout=0.3)
    idx = np.random.default_rng(5).integers(0, 13, size=(2, 8))
    model.train()
    assert np.abs(logits_of(model, idx) - logits_of(model, idx)).max() > 0
    model.eval()
    np.testing.assert_array_equal(logits_of(model, idx), logits_of(model, idx))


# ----- Hugging Face GPT-2 checkpoints -----------------------------------------------------------
def write_hf_folder(folder, model):
    """A checkpoint as the hub's gpt2 stores it: bare GPT2Model names, attn.bias mask buffers, lm_head copy."""
    cfg = model.config
    state = {k.removeprefix("transformer."): v for k, v in hf.gpt2_state_dict_to_hf(model.state_dict()).items()}
    for i in range(cfg.n_layer):
        state[f"h.{i}.attn.bias"] = np.tril(np.ones((cfg.block_size, cfg.block_size), np.float32))[None, None]
    state["lm_head.weight"] = state["wte.weight"].copy()
    save_file(state, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(hf.gpt_config_to_hf(cfg)))


def test_load_hf_gpt2_folder(tmp_path):
    model = tiny(seed=3).eval()
    write_hf_folder(tmp_path, model)
    loaded = load_hf_gpt2(tmp_path)
    assert not loaded.training
    idx = np.random.default_rng(6).integers(0, 13, size=(2, 9))
    np.testing.assert_array_equal(logits_of(loaded, idx), logits_of(model, idx))


def test_save_hf_gpt2_round_trip_and_names(tmp_path):
    model = tiny(seed=4).eval()
    save_hf_gpt2(model, tmp_path)
    keys = set(load_file(tmp_path / "model.safetensors"))
    assert {"transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight",
            "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.weight",
            "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight",
            "transformer.ln_f.weight"} <= keys
    idx = np.random.default_rng(7).integers(0, 13, size=(1, 12))
    np.testing.assert_array_equal(logits_of(load_hf_gpt2(tmp_path), idx), logits_of(model, idx))


def test_load_hf_gpt2_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_gpt2(tmp_path)
    model = tiny()
    write_hf_folder(tmp_path, model)
    state = load_file(tmp_path / "model.safetensors")
    del state["h.1.ln_2.bias"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(KeyError, match="missing keys: blocks.1.norm2.bias"):
        load_hf_gpt2(tmp_path)
