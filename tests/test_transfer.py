"""Transfer learning (minilm/transfer/): freezing, soft prompts, LoRA, training, run folders, errors.

Everything here runs on a tiny randomly initialised BERT saved as a Hugging Face folder, so it
needs no download; tests that need the real all-MiniLM-L6-v2 live in test_transfer_minilm.py.
"""
import dataclasses
import json

import numpy as np
import pytest

import minilm
from minilm.autograd.gradcheck import gradcheck
from minilm.cli import main
from minilm.models import BertConfig, BertModel
from minilm.models.hf import bert_state_dict_to_hf, write_folder
from minilm.nn import functional as F
from minilm.tokenizers import WordPieceTokenizer
from minilm.transfer import (FinetuneConfig, LoRALinear, SentenceEncoder, add_lora, build_classifier,
                             load_classifier, load_task, merge_lora, run_transfer, train_classifier)
from minilm.transfer.finetune import encode_texts, pad_batch, predict_logits
from minilm.transfer.zeroshot import zero_shot_head

CLASS_WORDS = ["cat", "dog", "mat"]
FILLER = ["the", "a", "sat", "on", "ran", "far", "away", "quickly", "big", "small", "red", "old"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + CLASS_WORDS + FILLER
TRAINED = ("features", "partial", "full", "prompt", "lora")


def tiny_config(**kw):
    return BertConfig(**{**dict(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=64, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0), **kw})


def tiny_encoder(seed=0):
    return BertModel(tiny_config(), add_pooling_layer=False, generator=np.random.default_rng(seed))


def tokenizer():
    return WordPieceTokenizer(VOCAB)


def toy_texts(n, seed):
    """Texts whose label is which of cat / dog / mat they contain, among 2-6 filler words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.integers(3))
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 7))))
        words.insert(int(rng.integers(len(words) + 1)), CLASS_WORDS[label])
        texts.append(" ".join(words))
        labels.append(label)
    return texts, np.asarray(labels)


@pytest.fixture
def tiny_folder(tmp_path):
    """A Hugging Face BERT folder (config.json, model.safetensors, vocab.txt) of the tiny encoder."""
    folder = tmp_path / "tiny-bert"
    write_folder(folder, dataclasses.asdict(tiny_config()), bert_state_dict_to_hf(tiny_encoder().state_dict()))
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return folder


def classifier(method, seed=0, **config):
    cfg = FinetuneConfig(method=method, layers=1, prompt_tokens=3, lora_rank=2, dropout=0.0, **config)
    return build_classifier(method, tiny_encoder(), 3, cfg, np.random.default_rng(seed)), cfg


def expected_trainable(method, name):
    if name.startswith("head."):
        return method != "zeroshot"
    return {"zeroshot": False, "features": False, "full": True,
            "partial": name.startswith("encoder.blocks.1."), "prompt": name.startswith("prompt."),
            "lora": ".lora_" in name}[method]


# ----- freezing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ("zeroshot",) + TRAINED)
def test_only_the_methods_parameters_get_gradients(method):
    model, _ = classifier(method)
    texts, labels = toy_texts(8, seed=1)
    data = encode_texts(tokenizer(), texts, labels, 32)
    model.train()
    loss = F.cross_entropy(model(*pad_batch(data.ids, np.arange(8), 0)), data.labels)
    if method == "zeroshot":
        assert not loss.requires_grad                                   # nothing to train at all
        return
    loss.backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == expected_trainable(method, name), name
        assert p.requires_grad == expected_trainable(method, name), name


@pytest.mark.parametrize("method", [m for m in TRAINED if m != "features"])
def test_frozen_weights_stay_bit_identical_through_training(method):
    model, cfg = classifier(method, epochs=2, lr=1e-2, head_lr=1e-2)
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    texts, labels = toy_texts(40, seed=2)
    train_classifier(model, encode_texts(tokenizer(), texts, labels, 32), cfg, pad_id=0)
    for name, p in model.named_parameters():
        if expected_trainable(method, name):
            assert not np.array_equal(p.data, before[name]), f"{name} did not train"
        else:
            assert np.array_equal(p.data, before[name]), f"{name} changed but is frozen"


# ----- soft prompt ------------------------------------------------------------------------------
def test_prompt_padding_never_changes_a_texts_logits():
    model, _ = classifier("prompt")
    model.prompt.weight.data[...] = np.random.default_rng(3).normal(size=model.prompt.weight.shape)
    texts = ["cat", "the big old dog ran far away quickly", "a red mat"]
    data = encode_texts(tokenizer(), texts, [0, 1, 2], 32)
    together = predict_logits(model, data, 0, batch_size=3)
    alone = np.concatenate([predict_logits(model, encode_texts(tokenizer(), [t], [0], 32), 0) for t in texts])
    np.testing.assert_allclose(together, alone, atol=2e-6)


def test_prompt_is_spliced_after_cls_seen_by_all_and_left_out_of_the_mean():
    model, _ = classifier("prompt")
    ids, mask = pad_batch(encode_texts(tokenizer(), ["cat", "a dog ran"], [0, 1], 32).ids, [0, 1], 0)
    seen = {}
    encoder_forward = model.encoder.forward

    def spy(input_ids=None, attention_mask=None, inputs_embeds=None, **kw):
        seen.update(mask=np.asarray(attention_mask), embeds=inputs_embeds.numpy())
        return encoder_forward(input_ids, attention_mask, inputs_embeds=inputs_embeds, **kw)

    model.encoder.forward = spy
    model.features(ids, mask)
    n = model.prompt.n_tokens
    assert seen["mask"].shape == (2, ids.shape[1] + n)
    np.testing.assert_array_equal(seen["mask"][:, 1:1 + n], 1)                    # every text sees the prompt
    np.testing.assert_array_equal(seen["mask"][0, 1 + n:], mask[0, 1:])           # its padding stays masked
    np.testing.assert_array_equal(seen["embeds"][:, 1:1 + n], np.broadcast_to(model.prompt.weight.data, (2, n, 16)))


def test_soft_prompt_gradients_match_finite_differences():
    model, _ = classifier("prompt")
    model.double().eval()
    ids, mask = pad_batch(encode_texts(tokenizer(), ["the cat sat", "a dog ran far away"], [0, 1], 32).ids,
                          [0, 1], 0)
    assert gradcheck(lambda w, head: model(ids, mask), [model.prompt.weight, model.head.weight])


# ----- LoRA -------------------------------------------------------------------------------------
def lora_with_random_b(seed=4):
    model, _ = classifier("lora")
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data[...] = rng.normal(0, 0.3, p.shape)
    return model


def test_lora_gradients_match_finite_differences():
    model = lora_with_random_b()
    model.double().eval()
    ids, mask = pad_batch(encode_texts(tokenizer(), ["the cat sat", "a dog"], [0, 1], 32).ids, [0, 1], 0)
    lora = model.encoder.blocks[0].self_attn.in_proj
    assert isinstance(lora, LoRALinear) and set(lora.parts) == {"query", "value"}
    assert gradcheck(lambda a_q, b_v: model(ids, mask), [lora.lora_A_query, lora.lora_B_value])


def test_lora_starts_as_the_pretrained_model_and_touches_only_its_rows():
    base = tiny_encoder()
    x = np.random.default_rng(5).normal(size=(2, 3, 16)).astype(np.float32)
    ref = base.blocks[0].self_attn.in_proj(x).numpy()
    add_lora(base, rank=2, targets=("value",))
    lora = base.blocks[0].self_attn.in_proj
    np.testing.assert_array_equal(lora(x).numpy(), ref)                          # B = 0: no change at all
    lora.lora_B_value.data[...] = 1.0
    out = lora(x).numpy()
    np.testing.assert_array_equal(out[..., :32], ref[..., :32])                  # query and key rows untouched
    assert not np.allclose(out[..., 32:], ref[..., 32:])


def test_merged_lora_equals_unmerged():
    model = lora_with_random_b()
    ids, mask = pad_batch(encode_texts(tokenizer(), ["the cat sat on the mat", "a dog"], [0, 1], 32).ids,
                          [0, 1], 0)
    model.eval()
    before = predict_logits(model, encode_texts(tokenizer(), ["the cat sat on the mat", "a dog"], [0, 1], 32), 0)
    hidden_before = model.features(ids, mask).numpy()
    merge_lora(model.encoder)
    assert not any(isinstance(b.self_attn.in_proj, LoRALinear) for b in model.encoder.blocks)
    np.testing.assert_allclose(model.features(ids, mask).numpy(), hidden_before, atol=1e-6, rtol=0)
    np.testing.assert_allclose(predict_logits(model, encode_texts(tokenizer(), ["the cat sat on the mat", "a dog"],
                                                                  [0, 1], 32), 0), before, atol=1e-6, rtol=0)


def test_lora_rejects_bad_targets_and_double_wrapping():
    with pytest.raises(ValueError, match="targets must be a non-empty subset"):
        add_lora(tiny_encoder(), targets=("output",))
    enc = add_lora(tiny_encoder())
    with pytest.raises(ValueError, match="already has LoRA"):
        add_lora(enc)


# ----- zero-shot --------------------------------------------------------------------------------
def test_zero_shot_head_is_the_cosine_to_each_description():
    model, _ = classifier("zeroshot")
    zero_shot_head(model, tokenizer(), ["cat", "dog", "mat"], descriptions={"cat": "a cat", "dog": "the dog",
                                                                            "mat": "a red mat"})
    texts = ["the big cat", "a dog ran far", "old mat", "a small red cat sat"]
    enc = SentenceEncoder(model.encoder, tokenizer())
    cosine = enc.encode(texts) @ enc.encode(["a cat", "the dog", "a red mat"]).T
    logits = predict_logits(model, encode_texts(tokenizer(), texts, [0] * 4, 32), 0)
    np.testing.assert_array_equal(logits.argmax(1), cosine.argmax(1))
    np.testing.assert_allclose(logits / np.linalg.norm(enc.encode(texts, normalize=False), axis=1)[:, None],
                               cosine, atol=1e-5)


# ----- learning ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", TRAINED)
def test_each_method_learns_the_toy_task(tiny_folder, tmp_path, method):
    texts, labels = toy_texts(240, seed=6)
    rows = [{"text": t, "label": CLASS_WORDS[y], "split": "test" if i >= 180 else "train"}
            for i, (t, y) in enumerate(zip(texts, labels))]
    task_file = tmp_path / "toy.jsonl"
    task_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    epochs = {"features": 60, "partial": 8, "full": 8, "prompt": 30, "lora": 10}[method]
    cfg = FinetuneConfig(method=method, epochs=epochs, lr=3e-3, head_lr=3e-2, batch_size=16, layers=1,
                         prompt_tokens=4, lora_rank=4, dropout=0.0)
    res = run_transfer(load_task(task_file), cfg, base=tiny_folder, out_dir=tmp_path / "run", val_fraction=0.1)
    assert res["test_accuracy"] >= 0.9, res["epochs"]
    run = load_classifier(tmp_path / "run")                                       # the saved run predicts the same
    logits = predict_logits(run.model, encode_texts(run.tokenizer, texts[180:], labels[180:], 64), 0)
    assert abs(float((logits.argmax(1) == labels[180:]).mean()) - res["test_accuracy"]) < 1e-9
    names = set(json.loads((tmp_path / "run" / "transfer.json").read_text())["base"])
    assert "sha256" in names and "folder" in names


# ----- run folders and the command line ---------------------------------------------------------
def test_run_folder_keeps_only_what_was_trained(tiny_folder, tmp_path):
    from minilm.io.safetensors import load_file
    texts, labels = toy_texts(30, seed=7)
    (tmp_path / "toy.csv").write_text("text,label\n" + "".join(f"{t},{CLASS_WORDS[y]}\n" for t, y in zip(texts, labels)))
    task = load_task(tmp_path / "toy.csv")
    assert len(task.test_texts) == 6 and task.classes == ["cat", "dog", "mat"]        # 20% of each class held out
    for method in ("lora", "prompt", "partial"):
        cfg = FinetuneConfig(method=method, epochs=1, layers=1, prompt_tokens=2, lora_rank=2)
        run_transfer(task, cfg, base=tiny_folder, out_dir=tmp_path / method)
        names = set(load_file(tmp_path / method / "trained.safetensors"))
        assert names == {n for n, _ in build_classifier(method, tiny_encoder(), 3, cfg).named_parameters()
                         if expected_trainable(method, n)}, method


def test_cli_finetune_classify_and_embed(tiny_folder, tmp_path, capsys):
    texts, labels = toy_texts(60, seed=8)
    task = tmp_path / "toy.csv"
    task.write_text("text,label\n" + "".join(f"{t},{CLASS_WORDS[y]}\n" for t, y in zip(texts, labels)))
    out = tmp_path / "run"
    assert main(["finetune", "--method", "lora", "--task", str(task), "--out", str(out), "--model",
                 str(tiny_folder), "--epochs", "1", "--lora-rank", "2"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {"test_accuracy", "trainable_params", "seconds"} <= set(results)
    capsys.readouterr()
    assert main(["classify", str(out), "the cat sat", "a red mat", "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("\tthe cat sat")
    assert main(["finetune", "--method", "lora", "--task", str(task), "--out", str(out), "--model",
                 str(tiny_folder)]) == 2                                           # a used folder is refused
    assert "already holds files" in capsys.readouterr().err
    lines_file = tmp_path / "texts.txt"
    lines_file.write_text("the cat\n\na dog ran\n")
    assert main(["embed", str(lines_file), "--out", str(tmp_path / "e.npy"), "--model", str(tiny_folder)]) == 0
    emb = np.load(tmp_path / "e.npy")
    assert emb.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    assert main(["embed", str(lines_file), "--out", str(tmp_path / "e.jsonl"), "--model", str(tiny_folder)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["the cat", "a dog ran"]
    np.testing.assert_allclose([r["embedding"] for r in rows], emb, atol=1e-6)


@pytest.mark.parametrize("content, suffix, message", [
    ("text,label\n", ".txt", "unknown format '.txt'"),
    ("text,kind\nthe cat,cat\n", ".csv", "must name the columns 'text' and 'label'"),
    ("text,label\nthe cat,\nthe dog,dog\n", ".csv", "line 2: the label is missing"),
    ("text,label\n  ,cat\nthe dog,dog\n", ".csv", "line 2: the text is empty"),
    ('{"text": "the cat"}\n', ".jsonl", "line 1: the label is missing"),
    ("not json\n", ".jsonl", "line 1: not JSON"),
    ("text,label\nthe cat,cat\nthe dog,cat\n", ".csv", "at least 2 labels"),
])
def test_bad_task_files_are_named(tmp_path, capsys, content, suffix, message):
    path = tmp_path / f"task{suffix}"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_task(path)
    assert main(["finetune", "--method", "full", "--task", str(path), "--out", str(tmp_path / "o"),
                 "--model", str(tmp_path)]) == 2                                   # no model there either
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_model_folder_without_vocab_is_one_line(tiny_folder, tmp_path, capsys):
    (tiny_folder / "vocab.txt").unlink()
    assert main(["finetune", "--method", "full", "--task", "wn-noun-10", "--out", str(tmp_path / "o"),
                 "--model", str(tiny_folder)]) == 2
    err = capsys.readouterr().err
    assert "vocab.txt is missing" in err and len(err.strip().splitlines()) == 1
    assert main(["classify", str(tmp_path / "nowhere"), "text"]) == 2
    assert "transfer.json is missing" in capsys.readouterr().err


def test_config_and_cli_values_are_checked(capsys):
    with pytest.raises(ValueError, match="unknown transfer method 'tuning'"):
        FinetuneConfig(method="tuning")
    with pytest.raises(ValueError, match="epochs=0"):
        FinetuneConfig(method="lora", epochs=0)
    with pytest.raises(ValueError, match="dropout=1.5"):
        FinetuneConfig(method="full", dropout=1.5)
    with pytest.raises(SystemExit):
        main(["finetune", "--method", "full", "--task", "wn-noun-10", "--out", "x", "--lr", "-1"])
    assert "must be a positive float" in capsys.readouterr().err


def test_a_run_depends_on_its_seed_not_on_what_ran_before(tiny_folder, tmp_path):
    config = tiny_config(hidden_dropout_prob=0.3)
    folder = tmp_path / "dropout-bert"
    write_folder(folder, dataclasses.asdict(config), bert_state_dict_to_hf(tiny_encoder().state_dict()))
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    texts, labels = toy_texts(40, seed=9)
    (tmp_path / "toy.csv").write_text("text,label\n" + "".join(f"{t},{CLASS_WORDS[y]}\n" for t, y in zip(texts, labels)))
    task = load_task(tmp_path / "toy.csv")
    cfg = FinetuneConfig(method="full", epochs=1, batch_size=8)
    first = run_transfer(task, cfg, base=folder)["steps"]
    minilm.random.default_generator().random(1000)                    # something else used minilm's generator
    assert run_transfer(task, cfg, base=folder)["steps"] == first
    assert run_transfer(task, dataclasses.replace(cfg, seed=1), base=folder)["steps"] != first
