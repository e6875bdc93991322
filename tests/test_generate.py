"""generate(): every token checked against a plain recomputation, not just the output's shape.

The reference below is the textbook loop: feed the last `block_size` tokens
(no cache), take the last position's logits, pick the next token with
`sample_next_token`. Same model, same random draws, so the comparisons are exact
on one machine. Across machines only the KV cache differs from the reference:
its logits differ from the uncached ones by float32 rounding (~1e-7), which
changes a sampled token only if a uniform draw falls within ~1e-7 of a
cumulative-probability boundary (about 1e-6 per draw for these ~50 draws).
"""
import numpy as np
import pytest

from minilm.generate import generate
from minilm.models import GPT, GPTConfig
from minilm.sampling import sample_next_token


def tiny_gpt(seed=0, vocab=17, block=8):
    return GPT(GPTConfig.preset("nano", vocab_size=vocab, block_size=block, n_layer=2, n_embd=24, n_head=2),
               generator=np.random.default_rng(seed)).eval()


def reference_generate(model, prompt, n, rng, **sampling):
    """The sliding-window loop written out: logits of the last block tokens, one token at a time."""
    idx = np.array(prompt, dtype=np.int64)
    block = model.config.block_size
    for _ in range(n):
        logits = model(idx[:, -block:]).numpy()[:, -1, :]
        nxt = np.asarray(sample_next_token(logits, rng, **sampling)).reshape(-1)
        idx = np.concatenate([idx, nxt[:, None]], axis=1)
    return idx


@pytest.mark.parametrize("use_cache", [True, False])
def test_past_the_context_each_token_comes_from_the_last_block_tokens(use_cache):
    """Sampled (an untrained model's greedy run just repeats one token, whatever the window)."""
    model = tiny_gpt()
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    out = generate(model, prompt, 20, rng=np.random.default_rng(9), use_cache=use_cache)   # 23 > block 8
    want = reference_generate(model, prompt, 20, np.random.default_rng(9))
    np.testing.assert_array_equal(out, want)
    # the window matters here: the first block tokens instead of the last ones give other tokens
    rng, wrong = np.random.default_rng(9), np.array(prompt)
    for _ in range(20):
        logits = model(wrong[:, :8]).numpy()[:, -1, :]
        wrong = np.concatenate([wrong, np.asarray(sample_next_token(logits, rng)).reshape(-1, 1)], axis=1)
    assert not np.array_equal(wrong, want)


def test_sampling_with_temperature_top_k_top_p_equals_the_reference_loop():
    model = tiny_gpt(seed=3)
    prompt = np.array([[0, 5], [7, 7]])
    options = dict(temperature=0.7, top_k=6, top_p=0.9)
    for use_cache in (True, False):
        out = generate(model, prompt, 14, rng=np.random.default_rng(42), use_cache=use_cache, **options)
        want = reference_generate(model, prompt, 14, np.random.default_rng(42), **options)
        np.testing.assert_array_equal(out, want)
    hot = generate(model, prompt, 14, rng=np.random.default_rng(42), temperature=1.5)
    assert not np.array_equal(hot, want)          # the options are not ignored


def test_temperature_zero_is_greedy_and_seeds_reproduce():
    model = tiny_gpt(seed=4)
    prompt = np.array([[1, 2]])
    np.testing.assert_array_equal(generate(model, prompt, 6, temperature=0),
                                  generate(model, prompt, 6, greedy=True))
    a = generate(model, prompt, 10, rng=np.random.default_rng(5))
    b = generate(model, prompt, 10, rng=np.random.default_rng(5))
    c = generate(model, prompt, 10, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_a_batch_row_stops_at_its_end_token_while_the_others_go_on():
    """Row 0 meets eos early and is padded with eos; row 1 continues exactly as it would alone."""
    model = tiny_gpt(seed=2, vocab=11, block=16)
    prompt = np.array([[1, 2, 3], [8, 9, 10]])
    free = generate(model, prompt, 10, greedy=True)
    eos = int(free[0, 4])                                    # row 0's second new token
    row1_first_eos = np.flatnonzero(free[1, 3:] == eos)
    assert row1_first_eos.size == 0 or row1_first_eos[0] > 4   # precondition: row 1 stops later (or never)
    out = generate(model, prompt, 10, greedy=True, eos_id=eos)
    stop0 = 3 + int(np.flatnonzero(free[0, 3:] == eos)[0])    # index of row 0's first eos
    np.testing.assert_array_equal(out[0, :stop0 + 1], free[0, :stop0 + 1])
    assert np.all(out[0, stop0 + 1:] == eos)                 # finished rows only repeat eos
    end1 = out.shape[1] if row1_first_eos.size == 0 else 3 + int(row1_first_eos[0]) + 1
    np.testing.assert_array_equal(out[1, :end1], free[1, :end1])
    # the batch stops as soon as every row has finished
    if row1_first_eos.size:
        assert out.shape[1] == end1
    else:
        assert out.shape[1] == prompt.shape[1] + 10


def test_generation_runs_in_eval_mode_and_restores_the_training_mode():
    """With dropout 0.5 a model left in train mode would drop units while generating."""
    model = GPT(GPTConfig.preset("nano", vocab_size=17, block_size=8, n_layer=2, n_embd=24, n_head=2, dropout=0.5),
                generator=np.random.default_rng(0))
    model.eval()
    want = reference_generate(model, np.array([[3, 4]]), 10, np.random.default_rng(1))
    model.train()
    one_d = generate(model, [3, 4], 10, rng=np.random.default_rng(1))
    assert model.training                                   # put back after generating
    assert one_d.shape == (1, 12) and one_d.dtype == np.int64
    np.testing.assert_array_equal(one_d, want)
    model.eval()
    np.testing.assert_array_equal(generate(model, np.array([[3, 4]]), 10, rng=np.random.default_rng(1)), want)
    assert not model.training


def test_edge_inputs():
    model = tiny_gpt()
    one_token = generate(model, np.array([[5]]), 3, greedy=True)
    np.testing.assert_array_equal(one_token, reference_generate(model, [[5]], 3, np.random.default_rng(0), greedy=True))
    np.testing.assert_array_equal(generate(model, np.array([[3, 4]]), 0), [[3, 4]])
    with pytest.raises(ValueError, match="empty"):
        generate(model, np.zeros((1, 0), dtype=np.int64), 3)


def test_the_kv_cache_is_on_by_default_and_feeds_one_token_per_step():
    model = tiny_gpt(block=16)
    fed = []
    real_forward = model.forward

    def spy(ids, *args, **kwargs):
        fed.append(np.shape(ids)[1])
        return real_forward(ids, *args, **kwargs)

    model.forward = spy
    generate(model, np.array([[1, 2, 3]]), 4, greedy=True)
    assert fed == [3, 1, 1, 1]                       # the prompt once, then only the newest token
    fed.clear()
    generate(model, np.array([[1, 2, 3]]), 4, greedy=True, use_cache=False)
    assert fed == [3, 4, 5, 6]
