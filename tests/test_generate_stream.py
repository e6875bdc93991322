"""Streaming generation: on_token sees every token as it is chosen; TextStreamer's text equals decode()."""
import numpy as np
import pytest

from minilm.generate import TextStreamer, generate
from minilm.models import GPT, GPTConfig
from minilm.tokenizers import ByteLevelBPE, CharTokenizer


@pytest.fixture(scope="module")
def model():
    return GPT(GPTConfig.preset("nano", vocab_size=300, block_size=16, n_layer=1),
               generator=np.random.default_rng(0)).eval()


def test_on_token_sees_each_token_in_order_and_changes_nothing(model):
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    seen = []
    out = generate(model, prompt, 7, temperature=0.9, rng=np.random.default_rng(3),
                   on_token=lambda step, ids: seen.append((step, ids.copy())))
    plain = generate(model, prompt, 7, temperature=0.9, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(out, plain)
    assert [s for s, _ in seen] == list(range(7))
    np.testing.assert_array_equal(np.stack([ids for _, ids in seen], axis=1), out[:, 3:])


def test_what_was_streamed_survives_an_interrupt(model):
    """A KeyboardInterrupt in the middle: the tokens already passed to on_token are kept by the caller."""
    seen = []

    def stop_after_four(step, ids):
        seen.append(int(ids[0]))
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(model, np.array([[1]]), 50, greedy=True, on_token=stop_after_four)
    full = generate(model, np.array([[1]]), 4, greedy=True)
    assert seen == full[0, 1:].tolist()
    assert model.training is False        # generate restored the mode it found


def test_max_new_tokens_is_checked(model):
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, np.array([[1]]), -1)
    assert generate(model, np.array([[1]]), 0).shape == (1, 1)


def test_byte_level_streaming_holds_back_half_characters():
    """Tokens that cut a UTF-8 character: the stream never shows a half character, and ends equal to decode()."""
    text = "naïve 日本 🚀 café " * 20
    tok = ByteLevelBPE.train(text, 300)
    rng = np.random.default_rng(0)
    for trial in range(200):
        # byte tokens one at a time cut every multi-byte character; random ids mix whole and cut ones
        ids = list(text.encode("utf-8")[: 40]) if trial == 0 else rng.integers(0, tok.vocab_size, 30).tolist()
        pieces = []
        streamer = TextStreamer(tok, pieces.append)
        for i in ids:
            streamer.put([i])
        if trial == 0:
            assert all("\ufffd" not in p for p in pieces)       # a whole prefix: nothing is replaced
        streamer.end()
        assert "".join(pieces) == tok.decode(ids)


def test_char_streaming_is_per_character():
    tok = CharTokenizer.from_text("hello world")
    pieces = []
    streamer = TextStreamer(tok, pieces.append)
    streamer.put(np.array([tok.encode("hello")[0]]))
    streamer.put(tok.encode("ello"))
    streamer.end()
    assert pieces == list("hello")
