"""minilm.apps.addition: formats checked by hand, deterministic disjoint splits, the loss mask, a tiny learning run."""
import numpy as np
import pytest

from minilm.apps import addition as A
from minilm.apps import small_gpt


def test_direct_format_reverses_the_sum_and_pads_the_operands():
    assert A.prompt(123, 45, 3) == "123+045="
    assert A.answer(123, 45, 3) == "8610"            # 168 -> "0168" -> reversed
    assert A.answer(999, 999, 3) == "8991"           # 1998
    assert A.answer(0, 0, 2) == "000"
    assert A.target_length(3) == len(A.answer(1, 2, 3)) == 4


def test_scratchpad_987_plus_654_by_hand():
    # columns from the right: 7+4+0 = 11 (write 1, carry 1); 8+5+1 = 14; 9+6+1 = 16; final carry 1
    assert A.scratchpad(987, 654, 3) == "7+4+0=11,8+5+1=14,9+6+1=16;"
    assert A.target(987, 654, 3, with_scratchpad=True) == "7+4+0=11,8+5+1=14,9+6+1=16;1461"
    assert int(A.answer(987, 654, 3)[::-1]) == 1641
    assert len(A.target(987, 654, 3, True)) == A.target_length(3, True)
    assert A.final_answer("7+4+0=11,8+5+1=14,9+6+1=16;1461") == "1461"
    assert A.final_answer("8610") == "8610"


@pytest.mark.parametrize("bad", [(1000, 1, 3), (-1, 1, 3), (1, 2, 0), (1.5, 2, 3), (True, 2, 3)])
def test_bad_operands_raise(bad):
    with pytest.raises(ValueError):
        A.prompt(*bad)


def test_test_pairs_are_deterministic_and_distinct():
    a, b = A.test_pairs(3, 1000, seed=0), A.test_pairs(3, 1000, seed=0)
    assert a.shape == (1000, 2) and np.array_equal(a, b)
    assert not np.array_equal(a, A.test_pairs(3, 1000, seed=1))
    assert len({tuple(p) for p in a.tolist()}) == 1000
    assert a.min() >= 0 and a.max() < 1000


def test_training_pairs_never_hit_the_held_out_ones():
    held = A.test_pairs(2, 2000, seed=0)             # a fifth of all 10,000 two-digit pairs
    pairs = A.train_pairs(np.random.default_rng(0), 2, 5000, held)
    assert pairs.shape == (5000, 2)
    assert not {tuple(p) for p in pairs.tolist()} & {tuple(p) for p in held.tolist()}
    again = A.train_pairs(np.random.default_rng(0), 2, 5000, held)
    assert np.array_equal(pairs, again)


def test_loss_mask_scores_only_the_answer():
    prompts, targets = A.encode_problems(np.array([[123, 45]]), 3)
    x, y = small_gpt.pack(prompts, targets, A.PAD_ID)
    assert A.TOKENIZER.decode(x[0].tolist()) == "123+045=861"
    assert (y[0, :7] == -100).all()                   # the operands and '+' are never predicted
    assert A.TOKENIZER.decode(y[0, 7:].tolist()) == "8610"


def test_mixed_lengths_are_padded_and_the_padding_is_not_scored():
    pairs = np.array([[7, 5], [12, 34]])
    x, y = small_gpt.pack(*A.encode_problems(pairs, np.array([1, 2])), A.PAD_ID)
    assert x.shape == y.shape == (2, 8)              # "12+34=" + "640" is 9 tokens; inputs drop the last
    assert A.TOKENIZER.decode(x[0].tolist()) == "7+5=2___"
    assert A.TOKENIZER.decode(y[0][y[0] != -100].tolist()) == "21"
    assert (y[0, 5:] == -100).all() and (x[0, 5:] == A.PAD_ID).all()


def test_exact_match():
    assert A.exact_match(["12", "34"], ["12", "35"]) == 0.5
    with pytest.raises(ValueError):
        A.exact_match([], [])


def test_a_tiny_gpt_learns_one_digit_addition_and_generalises_to_held_out_pairs():
    # about 5 CPU seconds: 80 of the 100 one-digit pairs are trained, the 20 others are scored
    model, history, held = A.train_adder((1,), steps=500, batch_size=64, n_layer=2, n_embd=48, lr=3e-3,
                                         test_size=20, seed=0)
    assert history["loss"][-1] < 0.05 * history["loss"][0]
    result = A.evaluate(model, held[1], 1)
    assert result["accuracy"] >= 0.75, result["examples"]       # 0.9 when written; an untrained model: ~0
