"""The Trainer and the pretraining recipe: learning, checkpoints, resume, failures, generation."""
import dataclasses
import io
import json

import numpy as np
import pytest

import minilm
from minilm.autograd import no_grad
from minilm.generate import generate
from minilm.io import load_checkpoint, take_prefix
from minilm.models import BertConfig, BertForMaskedLM, GPT, GPTConfig
from minilm.pretrain import PretrainConfig, load_pretrained, prepare
from minilm.sampling import sample_next_token
from minilm.tokenizers import CharTokenizer
from minilm.train import TrainingDiverged

TEXT = ("The quick brown fox jumps over the lazy dog. " * 3 + "A stitch in time saves nine.\n") * 40


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return str(path)


def tiny_gpt_config(corpus, out, **kw):
    base = dict(model="gpt", preset="nano", corpus=corpus, tokenizer="char", seq_len=16, batch_size=4,
                steps=12, lr=3e-3, warmup_steps=2, eval_interval=6, eval_batches=2, ckpt_interval=6,
                log_interval=100, seed=3, out_dir=str(out), n_layer=2, n_embd=24, n_head=2)
    base.update(kw)
    return PretrainConfig(**base)


def losses(history):
    return [r["train_loss"] for r in history]


def test_overfit_one_batch_both_objectives():
    """Both models memorise one batch: the loss goes (near) zero.

    Not bit-exact across machines: a BLAS or NumPy update changes the float32
    rounding, and a constant lr of 1e-2 made the last GPT loss chaotic (0.0115 at
    step 149, 0.74 at step 150). So the GPT run decays its lr (warm-up + cosine to
    1e-3) and the test asserts the MINIMUM over the last 10 steps. Measured over 12
    seeds (numpy 2.4.6, and on the numba backend): worst min-of-last-10 0.0055
    (GPT) and 0.0007 (BERT) against the 0.05 bound, a margin of ~9x and ~70x; the
    single last GPT value still spiked to 0.11 on one seed, which is why it is not
    the one asserted. The two GPT rows start with different tokens: two rows with
    the same first token but different targets have an irreducible loss of
    ln(2)/16 = 0.043 (seeds 1 and 4 of the old test's data hit it).
    """
    rng = np.random.default_rng(0)
    gpt = GPT(GPTConfig.preset("nano", vocab_size=11, block_size=8, n_layer=2), generator=rng)
    x = rng.integers(0, 11, (2, 8))
    x[:, 0] = [1, 2]                          # every prefix differs, so every target is learnable
    y = np.roll(x, -1, axis=1)
    opt = minilm.optim.AdamW(gpt.parameters(), lr=1e-2, weight_decay=0.0)
    gpt_losses = []
    for step in range(1, 151):
        opt.param_groups[0]["lr"] = minilm.optim.warmup_cosine(step, base_lr=1e-2, warmup_steps=10,
                                                               max_steps=150, min_lr=1e-3)
        _, loss = gpt(x, targets=y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        gpt_losses.append(loss.item())
    assert gpt_losses[0] > 2.0                # started near ln(11) = 2.4: the fall is real
    assert min(gpt_losses[-10:]) < 0.05, gpt_losses[-10:]

    rng = np.random.default_rng(1)
    bert = BertForMaskedLM(BertConfig.preset("bert-tiny", vocab_size=13, num_hidden_layers=1,
                                             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                           generator=rng)
    ids = rng.integers(5, 13, (2, 10))
    labels = np.where(rng.random((2, 10)) < 0.5, ids, -100)
    masked = np.where(labels != -100, 4, ids)
    opt = minilm.optim.AdamW(bert.parameters(), lr=3e-3, weight_decay=0.0)
    bert_losses = []
    for _ in range(150):
        _, loss = bert(masked, attention_mask=np.ones_like(ids), token_type_ids=np.zeros_like(ids),
                       labels=labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        bert_losses.append(loss.item())
    assert bert_losses[0] > 1.5
    assert min(bert_losses[-10:]) < 0.05, bert_losses[-10:]


def test_training_learns_and_writes_checkpoint_metrics_and_tokenizer(corpus, tmp_path):
    cfg = tiny_gpt_config(corpus, tmp_path / "run", steps=80, eval_interval=40)
    trainer, tokenizer = prepare(cfg, progress_stream=io.StringIO())
    history = trainer.fit()
    vals = [r["val_loss"] for r in history if "val_loss" in r]
    # It learned context, not just letter frequencies: the validation loss is below the corpus's
    # unigram entropy (3.12 nats, the best any context-free guess can do) by more than 0.8 nats.
    # Measured over seeds 0-7: 1.32 to 1.45 nats below (val loss 1.67-1.79), so the bound
    # holds with >= 0.5 nats to spare. (The old bound, log(V) - 0.5 after 40 steps, passed by
    # only 0.31 nats at this seed.) Exact values are not asserted: they move with BLAS rounding.
    counts = np.unique(list(TEXT), return_counts=True)[1] / len(TEXT)
    unigram_entropy = float(-(counts * np.log(counts)).sum())
    assert vals[-1] < unigram_entropy - 0.8, (vals, unigram_entropy)
    run = tmp_path / "run"
    assert (run / "checkpoint" / "model.safetensors").exists() and (run / "tokenizer.json").exists()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 81))
    model, tok, config = load_pretrained(run)
    for name, value in trainer.model.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[name], value)
    assert config["pretrain"]["steps"] == 80


def interrupt_after(trainer, n_batches):
    """Make the trainer's batcher raise KeyboardInterrupt (like Ctrl-C) on batch n_batches + 1."""
    real_next, calls = trainer.train_batcher.next_batch, {"n": 0}

    def next_batch():
        calls["n"] += 1
        if calls["n"] > n_batches:
            raise KeyboardInterrupt
        return real_next()

    trainer.train_batcher.next_batch = next_batch


def test_resume_gives_the_same_loss_curve_as_an_uninterrupted_run(corpus, tmp_path):
    """Bit-exact equality, on purpose: both runs execute the same float32 operations on the same
    machine, so any difference is a resume bug (a lost random state, a skipped batch), not rounding."""
    full, _ = prepare(tiny_gpt_config(corpus, tmp_path / "full", dropout=0.1), progress_stream=io.StringIO())
    full_history = full.fit()

    first, _ = prepare(tiny_gpt_config(corpus, tmp_path / "split", dropout=0.1, ckpt_interval=100),
                       progress_stream=io.StringIO())
    interrupt_after(first, 7)                 # Ctrl-C during step 8: the checkpoint holds step 7
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed, _ = prepare(tiny_gpt_config(corpus, tmp_path / "split"), resume=True, progress_stream=io.StringIO())
    assert resumed.step == 7
    resumed.fit()
    assert losses(resumed.history) == losses(full_history)
    assert [r.get("val_loss") for r in resumed.history] == [r.get("val_loss") for r in full_history]
    with pytest.raises(ValueError, match="--resume"):           # a new total is checked like a new run's
        prepare(tiny_gpt_config(corpus, tmp_path / "split", steps=0), resume=True, progress_stream=io.StringIO())


def test_keyboard_interrupt_saves_a_checkpoint(corpus, tmp_path):
    trainer, _ = prepare(tiny_gpt_config(corpus, tmp_path / "run", ckpt_interval=1000),
                         progress_stream=io.StringIO())
    interrupt_after(trainer, 4)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    resumed, _ = prepare(tiny_gpt_config(corpus, tmp_path / "run"), resume=True, progress_stream=io.StringIO())
    assert resumed.step == 4


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
    trainer, _ = prepare(tiny_gpt_config(corpus, tmp_path / "run", ckpt_interval=3), progress_stream=io.StringIO())
    real_loss = trainer.objective.loss

    def poisoned(model, batch):
        loss, n = real_loss(model, batch)
        return (loss * float("nan") if trainer.step == 4 else loss), n

    trainer.objective.loss = poisoned
    before = {k: v.copy() for k, v in trainer.model.state_dict().items()}
    real_step = trainer.optimizer.step

    def remember_weights():
        real_step()
        before.update({k: v.copy() for k, v in trainer.model.state_dict().items()})

    trainer.optimizer.step = remember_weights
    with pytest.raises(TrainingDiverged, match="step 5"):
        trainer.fit()
    # the live weights are the finite ones of step 4: the NaN step never reached them
    assert trainer.step == 4
    for name, value in trainer.model.state_dict().items():
        assert np.all(np.isfinite(value)), name
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    assert all(p.grad is None or np.all(p.grad == 0) for p in trainer.model.parameters())
    model, _, _ = load_pretrained(tmp_path / "run")
    assert all(np.all(np.isfinite(v)) for v in model.state_dict().values())
    resumed, _ = prepare(tiny_gpt_config(corpus, tmp_path / "run"), resume=True, progress_stream=io.StringIO())
    assert resumed.step == 3


def test_corrupted_checkpoint_and_config_mismatch_are_clear_errors(corpus, tmp_path):
    trainer, _ = prepare(tiny_gpt_config(corpus, tmp_path / "run", steps=2), progress_stream=io.StringIO())
    trainer.fit()
    weights = tmp_path / "run" / "checkpoint" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        load_pretrained(tmp_path / "run")
    weights.write_bytes(data)
    other = GPT(GPTConfig.preset("nano", vocab_size=5, n_layer=2, n_embd=24, n_head=2, block_size=16))
    state = take_prefix("model.", load_checkpoint(tmp_path / "run" / "checkpoint").tensors)
    with pytest.raises(KeyError, match=r"wte.weight: checkpoint \(\d+, 24\) vs model \(5, 24\)"):
        other.load_state_dict(state)


def test_bad_corpora_and_lengths_are_clear_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n")
    with pytest.raises(ValueError, match="empty"):
        prepare(tiny_gpt_config(str(empty), tmp_path / "a"), progress_stream=io.StringIO())
    short = tmp_path / "short.txt"
    short.write_text("abcdefghij" * 2)
    with pytest.raises(ValueError, match="fewer than seq_len"):
        prepare(tiny_gpt_config(str(short), tmp_path / "b"), progress_stream=io.StringIO())
    model = GPT(GPTConfig.preset("nano", vocab_size=5, block_size=8))
    with pytest.raises(ValueError, match="8"):
        model(np.zeros((1, 9), dtype=np.int64))
    with pytest.raises(ValueError, match="'z'"):
        CharTokenizer.from_text("abc").encode("abz")


def test_mlm_training_reports_accuracy_and_baseline(tmp_path, corpus):
    cfg = dataclasses.replace(tiny_gpt_config(corpus, tmp_path / "bert", steps=6, eval_interval=6),
                              model="bert", preset="bert-tiny", tokenizer="bpe", vocab_size=300,
                              n_layer=1, n_embd=32, n_head=2, seq_len=32)
    trainer, tok = prepare(cfg, progress_stream=io.StringIO())
    history = trainer.fit()
    final = history[-1]
    # the metrics equal an independent computation over the same validation batches
    mask_id, baseline = tok.token_to_id("[MASK]"), trainer.objective.baseline_token
    nll, n, right, base, at_mask, at_mask_right = 0.0, 0, 0, 0, 0, 0
    trainer.model.eval()
    with no_grad():
        for b in trainer.val_batches():
            logits = trainer.model(b["input_ids"], attention_mask=b["attention_mask"],
                                   token_type_ids=b["token_type_ids"]).numpy().astype(np.float64)
            graded = b["labels"] != -100
            z = logits[graded] - logits[graded].max(-1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
            target = b["labels"][graded]
            nll -= logp[np.arange(target.size), target].sum()
            n += target.size
            hit = logits[graded].argmax(-1) == target
            right += int(hit.sum())
            base += int((target == baseline).sum())
            shown = b["input_ids"][graded] == mask_id
            at_mask += int(shown.sum())
            at_mask_right += int(hit[shown].sum())
    assert final["val_loss"] == pytest.approx(nll / n, rel=1e-5)
    assert final["mlm_acc"] == pytest.approx(right / n)
    assert final["mlm_acc_most_frequent"] == pytest.approx(base / n) and base > 0
    assert final["mlm_acc_at_mask"] == pytest.approx(at_mask_right / at_mask)
    model, _, config = load_pretrained(tmp_path / "bert")
    assert config["model_type"] == "bert"


def test_kv_cache_generation_matches_the_no_cache_path():
    rng = np.random.default_rng(1)
    model = GPT(GPTConfig.preset("nano", vocab_size=17, block_size=24, n_layer=2), generator=rng).eval()
    prompt = rng.integers(0, 17, (2, 5))
    with_cache = generate(model, prompt, 12, temperature=0.9, top_k=8, rng=np.random.default_rng(7))
    without = generate(model, prompt, 12, temperature=0.9, top_k=8, rng=np.random.default_rng(7), use_cache=False)
    np.testing.assert_array_equal(with_cache, without)
    # past the context length generation slides a window: token t comes from tokens t-24 .. t-1
    long = generate(model, prompt, 30, temperature=0.9, rng=np.random.default_rng(3))
    assert long.shape == (2, 35)
    rng, want = np.random.default_rng(3), prompt.copy()
    for _ in range(30):
        logits = model(want[:, -24:]).numpy()[:, -1, :]
        want = np.concatenate([want, np.asarray(sample_next_token(logits, rng, temperature=0.9))[:, None]], axis=1)
    np.testing.assert_array_equal(long, want)


def test_generation_stops_at_the_end_token():
    model = GPT(GPTConfig.preset("nano", vocab_size=5, block_size=16, n_layer=1), generator=np.random.default_rng(0))
    prompt = np.array([[0, 1]])
    free = generate(model, prompt, 10, greedy=True)
    eos = int(free[0, 3])                                 # the second token it produces
    stopped = generate(model, prompt, 10, greedy=True, eos_id=eos)
    first = 2 + int(np.flatnonzero(free[0, 2:] == eos)[0])
    np.testing.assert_array_equal(stopped[0], free[0, :first + 1])   # same tokens, cut after the first eos


def test_the_seed_sets_the_initialisation_and_the_data_order(corpus, tmp_path):
    def first(seed, name):
        trainer, _ = prepare(tiny_gpt_config(corpus, tmp_path / name, seed=seed), progress_stream=io.StringIO())
        return trainer.model.state_dict(), [trainer.train_batcher.next_batch()[0] for _ in range(3)]

    (w3, x3), (w3b, x3b), (w4, x4) = first(3, "a"), first(3, "b"), first(4, "c")
    for name in w3:
        np.testing.assert_array_equal(w3[name], w3b[name])
    np.testing.assert_array_equal(np.stack(x3), np.stack(x3b))
    assert not np.array_equal(w3["wte.weight"], w4["wte.weight"])
    assert not np.array_equal(np.stack(x3), np.stack(x4))          # the batches, not only the weights
