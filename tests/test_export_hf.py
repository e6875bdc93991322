"""Export to Hugging Face: minilm -> folder -> minilm is exact; transformers reads the folder to 1e-5.

The transformers comparisons need the optional `transformers` package (with PyTorch)
and are skipped without it. They run in float32 on both sides and compare logits
with an absolute tolerance of 1e-5 (the differences seen here are ~3e-7: the same
float32 arithmetic summed in another order).
"""
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from minilm import cli_export
from minilm.cli import main
from minilm.cli_export import EXPORTED_TOKENIZER, export_run
from minilm.models import GPT, BertConfig, BertForMaskedLM, BertModel, GPTConfig, load_hf_gpt2
from minilm.models.hf import save_hf, save_hf_bert, save_hf_gpt2
from minilm.pretrain import load_pretrained
from minilm.tokenizers import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5


def jiggle(model, seed):
    """Every parameter random (biases and LayerNorms too), so a tensor mapped to the wrong place shows."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.normal(0.0, 0.3, p.shape).astype(p.data.dtype)
    return model.eval()


def tiny_gpt(seed=0, **overrides):
    cfg = GPTConfig.preset("nano", vocab_size=29, block_size=16, n_layer=2, n_embd=24, n_head=2, dropout=0.0)
    cfg = GPTConfig(**{**cfg.to_dict(), **overrides})
    return jiggle(GPT(cfg, generator=np.random.default_rng(seed)), seed)


def tiny_bert_config(**overrides):
    return BertConfig(**{**dict(vocab_size=31, hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=48, max_position_embeddings=16, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0), **overrides})


IDS = np.random.default_rng(7).integers(0, 29, (2, 11))


def transformers_models():
    """transformers' classes, or a skip. The repository's top-level kernels/ folder (installed as
    minilm.kernels) shadows the PyPI package `kernels` that transformers 5 imports whenever the
    repository root is on sys.path (`python -m pytest` puts it there), so it is imported without it."""
    pytest.importorskip("torch", reason="the Hugging Face comparison needs PyTorch")
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != str(ROOT)]
    local = sys.modules.get("kernels")
    if local is not None and str(ROOT) in str(getattr(local, "__file__", "")):
        del sys.modules["kernels"]
    try:
        transformers = pytest.importorskip("transformers", reason="the Hugging Face comparison needs transformers")
        for name in ("GPT2LMHeadModel", "BertForMaskedLM", "BertModel"):   # transformers imports lazily: now
            getattr(transformers, name)
    finally:
        sys.path[:] = saved
    import torch
    import transformers
    torch.set_num_threads(1)
    return torch, transformers


# ----- minilm -> folder -> minilm ----------------------------------------------------------------
@pytest.mark.parametrize("activation", ["gelu_tanh", "gelu"])
def test_gpt_round_trip_is_exact(tmp_path, activation):
    model = tiny_gpt(activation=activation)
    save_hf_gpt2(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["activation_function"] == {"gelu_tanh": "gelu_new", "gelu": "gelu"}[activation]
    assert config["eos_token_id"] is None                            # not GPT-2's 50256 in a 29-token vocabulary
    back = load_hf_gpt2(tmp_path)
    assert back.config == model.config
    np.testing.assert_array_equal(back(IDS).numpy(), model(IDS).numpy())


def test_bert_round_trip_is_exact(tmp_path):
    mlm = jiggle(BertForMaskedLM(tiny_bert_config(), generator=np.random.default_rng(1)), 1)
    save_hf_bert(mlm, tmp_path / "mlm")
    assert json.loads((tmp_path / "mlm" / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    back = BertForMaskedLM.from_pretrained(tmp_path / "mlm")
    np.testing.assert_array_equal(back(IDS).numpy(), mlm(IDS).numpy())
    plain = jiggle(BertModel(tiny_bert_config(), generator=np.random.default_rng(2)), 2)
    save_hf(plain, tmp_path / "plain")
    back = BertModel.from_pretrained(tmp_path / "plain")
    want, got = plain(IDS), back(IDS)
    np.testing.assert_array_equal(got.last_hidden_state.numpy(), want.last_hidden_state.numpy())
    np.testing.assert_array_equal(got.pooler_output.numpy(), want.pooler_output.numpy())


def test_what_hugging_face_cannot_say_is_refused(tmp_path):
    with pytest.raises(ValueError, match="bias=False"):
        save_hf_gpt2(tiny_gpt(bias=False), tmp_path / "nobias")
    assert not (tmp_path / "nobias" / "model.safetensors").exists()
    with pytest.raises(TypeError, match="no Hugging Face layout"):
        save_hf(object(), tmp_path / "x")
    with pytest.raises(ValueError, match="eos_token_id 29 is not in the vocabulary of 29"):
        save_hf_gpt2(tiny_gpt(), tmp_path / "eos", eos_token_id=29)
    # a pad id outside the vocabulary (minilm: no padding row) is written as null, which transformers accepts
    bert = BertModel(tiny_bert_config(pad_token_id=99), generator=np.random.default_rng(0))
    save_hf_bert(bert, tmp_path / "pad")
    assert json.loads((tmp_path / "pad" / "config.json").read_text())["pad_token_id"] is None


# ----- transformers reads the folder --------------------------------------------------------------
def test_transformers_gpt2_matches_minilm(tmp_path):
    torch, transformers = transformers_models()
    for activation in ("gelu_tanh", "gelu"):
        model = tiny_gpt(seed=3, activation=activation)
        save_hf_gpt2(model, tmp_path / activation)
        theirs, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / activation, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        with torch.no_grad():
            got = theirs.float().eval()(torch.tensor(IDS)).logits.numpy()
        want = model(IDS).numpy()
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
        assert np.abs(want).max() > 1.0                                      # logits large enough to matter


def test_transformers_bert_matches_minilm(tmp_path):
    torch, transformers = transformers_models()
    mlm = jiggle(BertForMaskedLM(tiny_bert_config(), generator=np.random.default_rng(4)), 4)
    save_hf_bert(mlm, tmp_path / "mlm")
    theirs, info = transformers.BertForMaskedLM.from_pretrained(tmp_path / "mlm", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    mask = np.ones_like(IDS)
    mask[1, 7:] = 0                                                          # padding, as a batch has it
    types = np.zeros_like(IDS)
    types[:, 5:] = 1
    with torch.no_grad():
        got = theirs.eval()(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(mask),
                            token_type_ids=torch.tensor(types)).logits.numpy()
    want = mlm(IDS, attention_mask=mask, token_type_ids=types).numpy()
    real = mask.astype(bool)                                                 # padded positions mean nothing
    np.testing.assert_allclose(got[real], want[real], rtol=0, atol=TOL)
    plain = jiggle(BertModel(tiny_bert_config(), generator=np.random.default_rng(5)), 5)
    save_hf_bert(plain, tmp_path / "plain")
    theirs = transformers.BertModel.from_pretrained(tmp_path / "plain").eval()
    with torch.no_grad():
        out = theirs(input_ids=torch.tensor(IDS))
    want = plain(IDS)
    np.testing.assert_allclose(out.last_hidden_state.numpy(), want.last_hidden_state.numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(out.pooler_output.numpy(), want.pooler_output.numpy(), rtol=0, atol=TOL)


# ----- `minilm export` on real run folders --------------------------------------------------------
TEXT = ("Python is a programming language. The return statement ends a function. " * 30 + "\n") * 8
TINY = ["--n-layer", "1", "--n-embd", "24", "--n-head", "2", "--batch-size", "4", "--eval-batches", "1",
        "--warmup-steps", "1", "--seq-len", "16", "--steps", "2", "--eval-interval", "2", "--backend", "numpy"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export_runs")
    (folder / "text.txt").write_text(TEXT)
    out = {}
    for model, extra in (("gpt", ["--preset", "nano", "--samples", "0"]),
                         ("gpt-bpe", ["--preset", "nano", "--samples", "0", "--tokenizer", "bpe", "--vocab-size", "300"]),
                         ("bert", ["--vocab-size", "300"])):
        out[model] = str(folder / model)
        assert main(["train", "--model", model.split("-")[0], "--corpus", str(folder / "text.txt"),
                     "--out", out[model], *TINY, *extra]) == 0
    return out


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", ["gpt", "gpt-bpe", "bert"])
def test_cli_export_end_to_end(runs, kind, tmp_path, capsys):
    out = tmp_path / "hf"
    assert main(["export", runs[kind], "--format", "hf", "--out", str(out)]) == 0
    assert "config.json, minilm_tokenizer.json, model.safetensors" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["config.json", EXPORTED_TOKENIZER, "model.safetensors"]
    assert sha256(out / EXPORTED_TOKENIZER) == sha256(Path(runs[kind]) / "tokenizer.json")
    model, tok, _ = load_pretrained(runs[kind])
    ids = np.array([tok.encode("The return")])
    want = (model(ids) if kind != "bert" else model(ids, attention_mask=np.ones_like(ids))).numpy()
    back = load_hf_gpt2(out) if kind != "bert" else BertForMaskedLM.from_pretrained(out)
    np.testing.assert_array_equal(back(ids).numpy(), want)                   # minilm reads its export exactly
    assert load_tokenizer(out / EXPORTED_TOKENIZER).encode("The return") == ids[0].tolist()
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == (["BertForMaskedLM"] if kind == "bert" else ["GPT2LMHeadModel"])
    if kind == "gpt-bpe":                                                    # the BPE's end-of-text token
        assert config["eos_token_id"] == tok.token_to_id("<|endoftext|>")
    if importlib_available("transformers") and importlib_available("torch"):
        torch, transformers = transformers_models()
        cls = transformers.BertForMaskedLM if kind == "bert" else transformers.GPT2LMHeadModel
        with torch.no_grad():
            got = cls.from_pretrained(out).eval()(torch.tensor(ids)).logits.numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    # the checkpoint/ folder itself works as RUN too, as for `minilm generate`
    assert main(["export", str(Path(runs[kind]) / "checkpoint"), "--out", str(tmp_path / "again")]) == 0
    assert sha256(tmp_path / "again" / "model.safetensors") == sha256(out / "model.safetensors")


def importlib_available(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None


def test_cli_export_errors(runs, tmp_path, capsys):
    capsys.readouterr()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    (tmp_path / "afile").write_text("x")
    cases = [(["--format", "onnx", "--out", str(tmp_path / "a")], "unknown export format 'onnx'; choose one of hf"),
             (["--out", str(tmp_path / "full")], "is not empty"),
             (["--out", str(tmp_path / "afile")], "is a file, not a folder"),
             (["--out", str(tmp_path / "afile" / "sub")], "which is a file"),
             ]
    for extra, words in cases:
        assert main(["export", runs["gpt"], *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("minilm export: error:") and words in err, err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"             # nothing touched
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(SystemExit):
        main(["export", runs["gpt"]])                                        # --out is required
    assert "--out" in capsys.readouterr().err


def test_a_failed_export_leaves_no_folder(runs, tmp_path, monkeypatch):
    def half_then_fail(model, folder, eos_token_id=None):
        (Path(folder) / "config.json").write_text("{}")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli_export, "save_hf", half_then_fail)
    with pytest.raises(OSError):
        export_run(runs["gpt"], tmp_path / "out")
    assert not (tmp_path / "out").exists() and os.listdir(tmp_path) == []
    (tmp_path / "empty").mkdir()                                             # an empty --out stays as it was
    with pytest.raises(OSError):
        export_run(runs["gpt"], tmp_path / "empty")
    assert os.listdir(tmp_path / "empty") == []
