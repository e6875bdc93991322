"""The two objectives' losses and metrics, against an independent NumPy computation from the logits.

The reference takes the model's logits and does the rest itself (log-softmax,
the mean over the graded positions of ALL batches, argmax accuracy), so a
metric computed from the wrong array, weighted per batch instead of per
token, or off by a position fails. Float64 sums of float32 values: compared
with a relative tolerance of 1e-6 (measured differences ~1e-8). The argmax
predictions are robust: the favoured token leads the runner-up by >= 2.3 logits
at every graded position, so the accuracies are exact on any machine.
"""
import math

import numpy as np
import pytest

from minilm.models import BertConfig, BertForMaskedLM, GPT, GPTConfig
from minilm.objectives import AutoregressiveLM, MaskedLM, most_frequent_masked_token

MASK, V = 4, 13


def log_softmax(logits):
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def tiny_bert(favour=None):
    """A random tiny BERT; favour=t adds 3 to token t's output bias so that some predictions are right."""
    cfg = BertConfig.preset("bert-tiny", vocab_size=V, num_hidden_layers=1, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0)
    model = BertForMaskedLM(cfg, generator=np.random.default_rng(0)).eval()
    if favour is not None:
        model.bias.data[favour] += 3.0
    return model


# (row, column, label, shown as [MASK]?) of the graded positions of three batches
GRADED = ([(0, 1, 7, True), (0, 4, 7, False), (1, 2, 9, True), (1, 5, 7, False), (1, 6, 10, True)],
          [(0, 3, 9, True), (1, 0, 8, True)],
          [])


def mlm_batches():
    """Three batches with 5, 2 and 0 graded positions; two graded tokens keep their own token
    (BERT's "10% unchanged"), the others are shown as [MASK]."""
    rng = np.random.default_rng(3)
    out = []
    for graded in GRADED:
        inputs = rng.integers(5, V, (2, 8))
        labels = np.full_like(inputs, -100)
        for r, c, label, masked in graded:
            labels[r, c] = label
            inputs[r, c] = MASK if masked else label
        out.append({"input_ids": inputs, "attention_mask": np.ones_like(inputs),
                    "token_type_ids": np.zeros_like(inputs), "labels": labels})
    return out


def reference_mlm_metrics(model, batches, baseline_token):
    nll, n, correct, base, at_mask_n, at_mask_correct = 0.0, 0, 0, 0, 0, 0
    for b in batches:
        logits = model(b["input_ids"], attention_mask=b["attention_mask"],
                       token_type_ids=b["token_type_ids"]).numpy()
        logp = log_softmax(logits)
        for r, c in zip(*np.nonzero(b["labels"] != -100)):
            target = b["labels"][r, c]
            nll -= logp[r, c, target]
            n += 1
            right = int(np.argmax(logits[r, c]) == target)
            correct += right
            base += int(target == baseline_token)
            if b["input_ids"][r, c] == MASK:
                at_mask_n += 1
                at_mask_correct += right
    return {"val_loss": nll / n, "val_ppl": math.exp(nll / n), "mlm_acc": correct / n,
            "mlm_acc_most_frequent": base / n, "mlm_acc_at_mask": at_mask_correct / at_mask_n}


def test_mlm_metrics_equal_an_independent_computation():
    model, batches = tiny_bert(favour=7), mlm_batches()
    baseline = 9
    got = MaskedLM(baseline_token=baseline, mask_token_id=MASK).evaluate(model, batches)
    want = reference_mlm_metrics(model, batches, baseline)
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-6), key
    # preconditions that make the accuracy checks bite: the predictions are not the inputs,
    # and accuracy at [MASK] differs from the accuracy over all graded tokens
    inputs_equal_labels = sum(int((b["input_ids"] == b["labels"]).sum()) for b in batches) / 7
    assert want["mlm_acc"] != inputs_equal_labels
    assert 0 < want["mlm_acc_at_mask"] != want["mlm_acc"] > 0
    assert want["mlm_acc_most_frequent"] == pytest.approx(2 / 7)


def test_mlm_metrics_without_baseline_or_mask_id_and_with_no_graded_tokens():
    model, batches = tiny_bert(), mlm_batches()
    got = MaskedLM().evaluate(model, batches)
    assert set(got) == {"val_loss", "val_ppl", "mlm_acc"}
    with pytest.raises(ValueError, match="no masked tokens"):
        MaskedLM().evaluate(model, batches[2:])


def test_accuracy_at_mask_is_left_out_when_no_graded_token_shows_mask():
    model, batches = tiny_bert(), mlm_batches()
    for b in batches:
        b["input_ids"] = np.where(b["labels"] != -100, b["labels"], b["input_ids"])   # all "unchanged"
    got = MaskedLM(mask_token_id=MASK).evaluate(model, batches)
    assert "mlm_acc" in got and "mlm_acc_at_mask" not in got


def test_perplexity_of_a_diverged_model_is_capped_not_an_overflow():
    class Exploded:
        def __call__(self, x, targets=None):
            return None, np.float64(800.0)           # exp(800) overflows a float

    got = AutoregressiveLM().evaluate(Exploded(), [(np.zeros((1, 2)), np.zeros((1, 2), dtype=np.int64))])
    assert got["val_loss"] == 800.0 and got["val_ppl"] == pytest.approx(math.exp(50.0))


def test_mlm_loss_is_the_models_loss_and_counts_the_real_tokens():
    model, batch = tiny_bert(), dict(mlm_batches()[0])
    batch["attention_mask"] = batch["attention_mask"].copy()
    batch["attention_mask"][1, 6:] = 0                       # two padding positions
    loss, n = MaskedLM().loss(model, batch)
    _, want = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"], labels=batch["labels"])
    assert loss.item() == want.item() and n == 14


def test_ar_loss_and_evaluation_weight_every_token_equally():
    model = GPT(GPTConfig.preset("nano", vocab_size=V, block_size=8, n_layer=1), generator=np.random.default_rng(1))
    model.eval()
    rng = np.random.default_rng(2)
    batches = [(rng.integers(0, V, (3, 8)), rng.integers(0, V, (3, 8))),
               (rng.integers(0, V, (1, 5)), rng.integers(0, V, (1, 5)))]    # 24 and 5 tokens
    loss, n = AutoregressiveLM().loss(model, batches[0])
    assert n == 24
    nll, count = 0.0, 0
    for x, y in batches:
        logp = log_softmax(model(x).numpy())
        nll -= np.take_along_axis(logp, y[..., None], axis=-1).sum()
        count += y.size
    assert loss.item() == pytest.approx(
        -np.take_along_axis(log_softmax(model(batches[0][0]).numpy()), batches[0][1][..., None], -1).mean(), rel=1e-6)
    got = AutoregressiveLM().evaluate(model, batches)
    assert got["val_loss"] == pytest.approx(nll / count, rel=1e-6)     # not the mean of the 2 batch means
    assert got["val_ppl"] == pytest.approx(math.exp(nll / count), rel=1e-6)
    with pytest.raises(ValueError, match="no batches"):
        AutoregressiveLM().evaluate(model, [])


class LabelBatches:
    """The one method most_frequent_masked_token uses: eval batches, here with fixed labels."""

    def __init__(self, labels):
        self.labels, self.seen = labels, None

    def iter_eval_batches(self, seed=0, max_batches=None):
        self.seen = (seed, max_batches)
        return iter([{"labels": lab} for lab in self.labels[:max_batches]])


def test_most_frequent_masked_token_counts_graded_positions_only():
    labels = [np.array([[-100, -100, 7, 9], [-100, 9, -100, -100]]),     # -100 is the commonest value
              np.array([[7, -100, -100, 7]]),
              np.array([[9, 9, 9, 9]])]                                  # beyond max_batches=2
    batcher = LabelBatches(labels)
    assert most_frequent_masked_token(batcher, batches=2) == 7           # 7: 3 times, 9: 2 times
    assert batcher.seen[1] == 2
    assert most_frequent_masked_token(batcher, batches=3) == 9           # 9: 6 times
    assert most_frequent_masked_token(LabelBatches([np.full((2, 3), -100)])) is None
