"""The two self-supervised objectives, as the Trainer sees them.

Autoregressive LM (GPT): maximise log P(x_i | x_<i) for every position,
    L_AR = -(1/N) sum_i log P(x_i | x_<i)
Masked LM (BERT): hide ~15% of the tokens and predict them from both sides,
    L_MLM = -(1/|M|) sum_{i in M} log P(x_i | x_\\M)

Each objective turns a batch into a loss for training, and a stream of
validation batches into metrics: loss, perplexity exp(loss), and for MLM the
masked-token accuracy next to the accuracy of always guessing the most
frequent masked token (the baseline a model has to beat).
"""
import math

import numpy as np

from minilm.autograd.grad_mode import no_grad


class AutoregressiveLM:
    name = "ar"

    def loss(self, model, batch):
        x, y = batch                                                  # (B, T), (B, T)
        _, loss = model(x, targets=y)
        return loss, int(y.size)

    def count(self, batch):
        """How many terms the loss averages over: every target (data parallelism weighs shards by it)."""
        return int(batch[1].size)

    @no_grad()
    def evaluate(self, model, batches):
        total, count = 0.0, 0
        for x, y in batches:
            _, loss = model(x, targets=y)
            total += float(loss.item()) * y.size
            count += y.size
        if count == 0:
            raise ValueError("evaluate: the validation set produced no batches")
        mean = total / count
        return {"val_loss": mean, "val_ppl": math.exp(min(mean, 50.0))}


class MaskedLM:
    name = "mlm"

    def __init__(self, ignore_index=-100, baseline_token=None, mask_token_id=None):
        self.ignore_index = ignore_index
        self.baseline_token = baseline_token      # the most frequent masked target in training data
        self.mask_token_id = mask_token_id        # to also score only the positions shown as [MASK]

    def loss(self, model, batch):
        _, loss = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                        token_type_ids=batch["token_type_ids"], labels=batch["labels"])
        return loss, int(batch["attention_mask"].sum())

    def count(self, batch):
        """How many terms the loss averages over: the chosen (masked) positions only."""
        return int((np.asarray(batch["labels"]) != self.ignore_index).sum())

    @no_grad()
    def evaluate(self, model, batches):
        total, count, correct, baseline_correct = 0.0, 0, 0, 0
        masked_count, masked_correct = 0, 0
        for batch in batches:
            logits, loss = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                                 token_type_ids=batch["token_type_ids"], labels=batch["labels"])
            labels = batch["labels"]
            chosen = labels != self.ignore_index                      # (B, T)
            n = int(chosen.sum())
            if n == 0:
                continue
            total += float(loss.item()) * n
            count += n
            predicted = np.asarray(logits.numpy()).argmax(axis=-1)    # (B, T, V) -> (B, T)
            correct += int((predicted[chosen] == labels[chosen]).sum())
            if self.baseline_token is not None:
                baseline_correct += int((labels[chosen] == self.baseline_token).sum())
            if self.mask_token_id is not None:
                # 10% of the graded tokens were left unchanged (the answer is visible), so the
                # accuracy at [MASK] positions alone is the harder, more honest number.
                shown_mask = chosen & (batch["input_ids"] == self.mask_token_id)
                masked_count += int(shown_mask.sum())
                masked_correct += int((predicted[shown_mask] == labels[shown_mask]).sum())
        if count == 0:
            raise ValueError("evaluate: no masked tokens in the validation batches")
        mean = total / count
        out = {"val_loss": mean, "val_ppl": math.exp(min(mean, 50.0)), "mlm_acc": correct / count}
        if self.baseline_token is not None:
            out["mlm_acc_most_frequent"] = baseline_correct / count
        if self.mask_token_id is not None and masked_count:
            out["mlm_acc_at_mask"] = masked_correct / masked_count
        return out


def most_frequent_masked_token(batcher, batches=20, ignore_index=-100):
    """The commonest target among masked positions, estimated from a few eval-style batches."""
    counts = {}
    for batch in batcher.iter_eval_batches(seed=12345, max_batches=batches):
        labels = batch["labels"]
        for token, n in zip(*np.unique(labels[labels != ignore_index], return_counts=True)):
            counts[int(token)] = counts.get(int(token), 0) + int(n)
    return max(counts, key=counts.get) if counts else None
