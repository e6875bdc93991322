"""minilm.data MLM: the 15% / 80-10-10 corruption statistically, specials never chosen, batching, packing, resume."""

import json

import numpy as np
import pytest

from minilm.data import MLMBatcher, mask_tokens

PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103  # the BERT uncased ids
V = 1000
SPECIALS = [PAD, UNK, CLS, SEP, MASK]


def within_4_sigma(count, n, p):
    sigma = np.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= 4 * sigma, (count, n * p, sigma)


def make_ids(rng, B=400, T=500):
    """(B, T) rows: [CLS] tokens... [SEP] [PAD]... with the content drawn from the non-special ids."""
    allowed = np.setdiff1d(np.arange(V), SPECIALS)
    ids = allowed[rng.integers(0, allowed.size, size=(B, T))]
    lengths = rng.integers(T // 2, T + 1, size=B)
    ids[:, 0] = CLS
    for r, n in enumerate(lengths):
        ids[r, n - 1] = SEP
        ids[r, n:] = PAD
    return ids


def test_proportions_match_bert_within_4_sigma():
    rng = np.random.default_rng(0)
    ids = make_ids(rng)  # 200,000 positions
    inputs, labels = mask_tokens(ids, rng, mask_token_id=MASK, vocab_size=V, special_ids=SPECIALS)
    assert inputs.dtype == labels.dtype == np.int64 and inputs.shape == labels.shape == ids.shape

    special = np.isin(ids, SPECIALS)
    chosen = labels != -100
    n_candidates, n_chosen = int((~special).sum()), int(chosen.sum())
    ok, info = within_4_sigma(n_chosen, n_candidates, 0.15)
    assert ok, info
    assert not (chosen & special).any()  # [CLS], [SEP], [PAD] are never chosen
    assert np.array_equal(inputs[special], ids[special])  # ... nor changed
    assert np.array_equal(labels[chosen], ids[chosen])  # labels are the original ids
    assert np.array_equal(inputs[~chosen], ids[~chosen])  # unchosen tokens untouched

    n_allowed = V - len(SPECIALS)  # a random replacement equals the original with prob 1 / n_allowed
    became_mask = int((inputs[chosen] == MASK).sum())
    became_other = int(((inputs != ids) & (inputs != MASK))[chosen].sum())
    stayed = int((inputs[chosen] == ids[chosen]).sum())
    for count, p in [(became_mask, 0.8), (became_other, 0.1 * (1 - 1 / n_allowed)), (stayed, 0.1 + 0.1 / n_allowed)]:
        ok, info = within_4_sigma(count, n_chosen, p)
        assert ok, info
    replaced = inputs[chosen & (inputs != ids) & (inputs != MASK)]
    assert not np.isin(replaced, SPECIALS).any()  # random tokens are never special (or [MASK])
    expected_distinct = n_allowed * (1 - np.exp(-replaced.size / n_allowed))  # for uniform draws
    assert len(np.unique(replaced)) > 0.9 * expected_distinct  # ... and spread over the vocabulary


def test_positional_special_mask_and_custom_replacements():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 50, size=(64, 64))
    never = np.zeros_like(ids, dtype=bool)
    never[:, :32] = True  # the left half must never be chosen
    with pytest.raises(ValueError, match="random_token_ids"):
        mask_tokens(ids, rng, mask_token_id=49, vocab_size=50, special_ids=never)
    inputs, labels = mask_tokens(
        ids, rng, mask_token_id=49, vocab_size=50, special_ids=never, random_token_ids=[7, 8], mask_prob=0.5, ignore_index=-1
    )
    assert (labels[:, :32] == -1).all() and (labels[:, 32:] != -1).any()
    swapped = (inputs != ids) & (inputs != 49)
    assert swapped.any() and np.isin(inputs[swapped], [7, 8]).all()


def test_same_seed_same_masks_and_edge_probabilities():
    ids = np.random.default_rng(2).integers(5, 30, size=(8, 16))
    a = mask_tokens(ids, np.random.default_rng(3), mask_token_id=4, vocab_size=30, special_ids=[0])
    b = mask_tokens(ids, np.random.default_rng(3), mask_token_id=4, vocab_size=30, special_ids=[0])
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    inputs, labels = mask_tokens(ids, np.random.default_rng(0), mask_token_id=4, vocab_size=30, mask_prob=0.0)
    assert (labels == -100).all() and np.array_equal(inputs, ids)
    _, labels = mask_tokens(ids, np.random.default_rng(0), mask_token_id=4, vocab_size=30, mask_prob=1.0)
    assert np.array_equal(labels, ids)


def test_mask_tokens_errors():
    rng = np.random.default_rng(0)
    ids = np.array([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"ids span \[1, 3\], outside the vocabulary \[0, 3\)"):
        mask_tokens(ids, rng, mask_token_id=0, vocab_size=3)
    with pytest.raises(ValueError, match="mask_token_id 9"):
        mask_tokens(ids, rng, mask_token_id=9, vocab_size=5)
    with pytest.raises(ValueError, match="mask_prob"):
        mask_tokens(ids, rng, mask_token_id=0, vocab_size=5, mask_prob=1.5)
    with pytest.raises(TypeError, match="integers"):
        mask_tokens(ids.astype(float), rng, mask_token_id=0, vocab_size=5)
    with pytest.raises(ValueError, match="shape"):
        mask_tokens(ids, rng, mask_token_id=0, vocab_size=5, special_ids=np.zeros((2, 2), bool), random_token_ids=[1])


# ------------------------------------------------------------------ MLMBatcher


def make_sentences(rng, n=97, longest=40):
    allowed = np.setdiff1d(np.arange(V), SPECIALS)
    return [allowed[rng.integers(0, allowed.size, size=rng.integers(1, longest))].tolist() for _ in range(n)]


def batcher(sentences, seed=0, **kw):
    args = dict(batch_size=8, max_len=32, rng=np.random.default_rng(seed))
    args.update(cls_id=CLS, sep_id=SEP, pad_id=PAD, mask_id=MASK, vocab_size=V)
    args.update(kw)
    return MLMBatcher(sentences, **args)


def originals(batch):
    return np.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])


def test_batch_layout_wrapping_padding_truncation():
    sentences = [[5, 6, 7], [8] * 50, [9]]
    b = batcher(sentences, batch_size=3, max_len=10, special_ids=[UNK])
    batch = b.next_batch()
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert all(v.dtype == np.int64 and v.shape == (3, 10) for v in batch.values())
    rows = sorted(originals(batch).tolist(), key=lambda r: r[1])
    assert rows == [
        [CLS, 5, 6, 7, SEP, PAD, PAD, PAD, PAD, PAD],
        [CLS, 8, 8, 8, 8, 8, 8, 8, 8, SEP],  # truncated to max_len
        [CLS, 9, SEP, PAD, PAD, PAD, PAD, PAD, PAD, PAD],
    ]
    assert np.array_equal(batch["attention_mask"], (originals(batch) != PAD).astype(np.int64))
    assert (batch["token_type_ids"] == 0).all()
    short = batcher([[5, 6], [7]], batch_size=2, max_len=64).next_batch()
    assert short["input_ids"].shape == (2, 4)  # padded to the longest in the batch, not to max_len


def test_specials_and_pads_never_chosen_over_many_batches():
    b = batcher(make_sentences(np.random.default_rng(4)), mask_prob=0.5)
    for _ in range(30):
        batch = b.next_batch()
        orig = originals(batch)
        special = np.isin(orig, [CLS, SEP, PAD])
        assert (batch["labels"][special] == -100).all()
        assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
        assert np.array_equal(batch["input_ids"][special], orig[special])


def test_one_epoch_visits_every_sentence_once_and_resume_is_exact():
    sentences = make_sentences(np.random.default_rng(5), n=96)
    b = batcher(sentences, batch_size=8, max_len=64)
    seen = []
    for _ in range(12):  # 96 / 8 = one epoch
        batch = b.next_batch()
        for row, m in zip(originals(batch), batch["attention_mask"]):
            seen.append(tuple(row[1 : m.sum() - 1]))
    assert sorted(seen) == sorted(tuple(s) for s in sentences) and b.epoch == 0

    saved = json.loads(json.dumps(b.state_dict()))
    expected = [b.next_batch() for _ in range(15)]  # runs into the next epoch
    assert b.epoch == 2
    c = batcher(sentences, seed=77, batch_size=8, max_len=64)
    c.load_state_dict(saved)
    for e, g in zip(expected, (c.next_batch() for _ in range(15))):
        assert all(np.array_equal(e[k], g[k]) for k in e)
    with pytest.raises(ValueError, match="batch_size"):
        batcher(sentences, batch_size=4, max_len=64).load_state_dict(saved)


def test_packing_fills_units_and_keeps_order():
    sentences = make_sentences(np.random.default_rng(6), n=200, longest=12)  # 1-11 tokens, like short glosses
    packed = batcher(sentences, max_len=64, pack=True)
    plain = batcher(sentences, max_len=64)
    assert len(packed.units) < len(plain.units) / 6
    assert all(u.size <= 64 and u[0] == CLS and u[-1] == SEP for u in packed.units)
    content = np.concatenate([u[~np.isin(u, [CLS, SEP])] for u in packed.units])
    assert np.array_equal(content, np.concatenate(sentences))  # corpus order, nothing lost
    n_seps = sum(int((u == SEP).sum()) for u in packed.units)
    assert n_seps == len(sentences)  # one [SEP] after each sentence
    assert np.mean([u.size for u in packed.units[:-1]]) / 64 > 0.85  # full units, bar the last
    batch = packed.next_batch()
    assert batch["input_ids"].shape[1] <= 64 and (batch["token_type_ids"] == 0).all()


def test_eval_batches_are_fixed_and_leave_training_rng_alone():
    sentences = make_sentences(np.random.default_rng(8), n=20)
    b = batcher(sentences, batch_size=8)
    state = json.dumps(b.state_dict())
    first = list(b.iter_eval_batches(seed=1))
    second = list(b.iter_eval_batches(seed=1))
    assert [x["input_ids"].shape[0] for x in first] == [8, 8, 4]
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(first, second) for k in x)
    assert json.dumps(b.state_dict()) == state
    assert len(list(b.iter_eval_batches(max_batches=1))) == 1


def test_batcher_errors_and_empty_sentences():
    with pytest.raises(ValueError, match=r"sentence 1 \(position 2\) holds the special id 102"):
        batcher([[5, 6], [7, 8, SEP]])
    with pytest.raises(ValueError, match="sentence 0 .* the id 5000"):
        batcher([[5000]])
    with pytest.raises(ValueError, match="no non-empty sentences"):
        batcher([[], []])
    with pytest.raises(ValueError, match="max_len"):
        batcher([[5]], max_len=2)
    b = batcher([[], [5, 6], []])
    assert b.num_dropped_empty == 2 and len(b.units) == 1


def test_the_smallest_max_len_holds_one_token():
    """max_len = 3 is allowed: [CLS] one token [SEP]; longer sentences are cut to that token."""
    b = batcher([[5, 6, 7], [8]], batch_size=2, max_len=3)
    assert [u.tolist() for u in b.units] == [[CLS, 5, SEP], [CLS, 8, SEP]]
    with pytest.raises(ValueError, match="max_len"):
        batcher([[5]], batch_size=1, max_len=2)


def test_packing_boundaries_are_exact():
    """[CLS] 5 6 [SEP] 7 8 9 10 [SEP] is 9 ids: one more than max_len 8, so it becomes two units;
    a sentence longer than max_len - 2 is cut to fit on its own."""
    b = batcher([[5, 6], [7, 8, 9, 10], [11, 12, 13, 14, 15, 16, 17, 18, 19]], max_len=8, pack=True)
    assert [u.tolist() for u in b.units] == [[CLS, 5, 6, SEP], [CLS, 7, 8, 9, 10, SEP],
                                            [CLS, 11, 12, 13, 14, 15, 16, SEP]]
    exact = batcher([[5, 6], [7, 8, 9]], max_len=8, pack=True)             # 1 + 2 + 1 + 3 + 1 = 8: fits
    assert [u.tolist() for u in exact.units] == [[CLS, 5, 6, SEP, 7, 8, 9, SEP]]


def test_ids_outside_the_vocabulary_are_refused():
    with pytest.raises(ValueError, match=f"the id {V}, outside"):
        batcher([[5, 6], [7, V]])                                          # == vocab_size: one too many
    with pytest.raises(ValueError, match="special ids"):
        batcher([[5]], mask_id=V)                                          # the largest special id checked
    with pytest.raises(ValueError, match="special ids"):
        batcher([[5]], special_ids=[-1])                                   # ... and the smallest


def test_random_replacement_ids_must_lie_in_the_vocabulary():
    ids = np.full((4, 8), 7)
    for bad in ([3, 50], [-1, 3]):
        with pytest.raises(ValueError, match="random_token_ids"):
            mask_tokens(ids, np.random.default_rng(0), mask_token_id=49, vocab_size=50, random_token_ids=bad)
