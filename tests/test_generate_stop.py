"""Stop sequences: rows end at their first stop string (independently), the text is cut before it,
a stop string spread over tokens is still found, and streaming never shows text past a stop."""
import numpy as np
import pytest

from minilm.cli import main
from minilm.generate import StopOnText, TextStreamer, generate, generate_text
from minilm.models import GPT, GPTConfig
from minilm.tokenizers import ByteLevelBPE, CharTokenizer
from minilm.tensor import Tensor

ALPHABET = "abcdef \n"


class ScriptedModel:
    """A stand-in for a GPT that writes fixed texts: row b's next token is script[b][position].

    It lets the tests know exactly what is generated, so "where must the cut be" has one answer.
    """

    def __init__(self, scripts, vocab_size, block_size=64):
        self.scripts = [list(s) for s in scripts]
        self.config = GPTConfig(vocab_size=vocab_size, n_layer=1, n_head=1, n_embd=8, block_size=block_size)
        self.training = False
        self.calls = 0
        self._pos = 0

    def eval(self):
        return self

    def train(self, mode=True):
        self.training = mode
        return self

    def new_kv_caches(self):
        return [None]

    def __call__(self, idx, kv_caches=None):
        self.calls += 1
        idx = np.asarray(idx)
        self._pos = idx.shape[1] if self.calls == 1 or kv_caches is None else self._pos + 1
        logits = np.full((idx.shape[0], idx.shape[1], self.config.vocab_size), -1e9, dtype=np.float32)
        for b, script in enumerate(self.scripts):
            step = self._pos - self._prompt_len
            logits[b, -1, script[min(step, len(script) - 1)]] = 0.0
        return Tensor(logits)

    def start(self, prompt_len):
        self.calls, self._prompt_len = 0, prompt_len
        return self


def scripted(tok, texts, prompt_len):
    return ScriptedModel([tok.encode(t) for t in texts], tok.vocab_size).start(prompt_len)


def test_rows_stop_independently_and_are_cut_before_the_stop():
    tok = CharTokenizer.from_text(ALPHABET)
    texts = ["ab\n\ncdef", "abcdef abc\n\nfff", "aaaaaaaaaaaaaaaaaaaa"]     # stop at 2, at 10, never
    model = scripted(tok, texts, prompt_len=1)
    out = generate_text(model, tok, ["a", "b", "c"], 20, stop=("\n\n",), greedy=True)
    assert out == ["ab", "abcdef abc", "aaaaaaaaaaaaaaaaaaaa"]


def test_generation_ends_when_every_row_has_stopped():
    tok = CharTokenizer.from_text(ALPHABET)
    model = scripted(tok, ["ab\n\nffffffffff", "a\n\nfffffffffff"], prompt_len=1)
    seen = []
    criterion = StopOnText(tok, "\n\n", prompt_len=1)
    out = generate(model, np.array([tok.encode("a"), tok.encode("b")]), 50, greedy=True,
                   stopping_criteria=criterion, on_token=lambda step, ids: seen.append(step))
    assert len(seen) == 4 and out.shape == (2, 5)          # the longer row needed 4 tokens ("ab\n\n")
    assert [criterion.cut(t) for t in criterion.texts(out)] == ["ab", "a"]


def test_without_a_stop_string_generation_is_unchanged():
    model = GPT(GPTConfig.preset("nano", vocab_size=len(ALPHABET), block_size=16, n_layer=1),
                generator=np.random.default_rng(0))
    tok = CharTokenizer.from_text(ALPHABET)
    plain = generate(model, np.array([tok.encode("ab")]), 10, temperature=0.9, rng=np.random.default_rng(1))
    text = generate_text(model, tok, "ab", 10, temperature=0.9, rng=np.random.default_rng(1))
    assert text == tok.decode(plain[0, 2:].tolist())


def test_a_stop_string_split_across_tokens_or_inside_one_is_found():
    text = "def f():\n    return 1\n\ndef g():\n    pass\n" * 20
    tok = ByteLevelBPE.train(text, 300)
    stop = "\ndef "
    ids = tok.encode("    return 1\n\ndef g")
    pieces = [tok.decode([i]) for i in ids]
    assert not any(stop in p for p in pieces)                  # no single token holds it: it spans tokens
    model = ScriptedModel([ids], tok.vocab_size).start(prompt_len=1)
    assert generate_text(model, tok, "x", len(ids), stop=(stop,), greedy=True) == "    return 1\n"
    # and a stop string shorter than a token ("1" sits inside the token " 1" or "1\n")
    model.start(prompt_len=1)
    assert generate_text(model, tok, "x", len(ids), stop=("1",), greedy=True) == "    return "


def test_streaming_never_shows_text_past_a_stop():
    tok = CharTokenizer.from_text(ALPHABET)
    script = "abc\nde\n\nfff"
    for stop in (("\n\n",), ("e\n\nf",), ("zz", "c\n")):
        pieces = []
        streamer = TextStreamer(tok, pieces.append, stop=stop)
        for ch in script:
            streamer.put(tok.encode(ch))
            # at every moment, what was written is a prefix of the final cut text
            assert "".join(pieces) == script[: len("".join(pieces))]
        streamer.end()
        expected = script[: min(i for i in (script.find(s) for s in stop) if i >= 0)]
        assert "".join(pieces) == expected and streamer.stopped


def test_streaming_flushes_the_held_back_tail_when_no_stop_comes():
    tok = CharTokenizer.from_text(ALPHABET)
    pieces = []
    streamer = TextStreamer(tok, pieces.append, stop=("\ndef ",))
    streamer.put(tok.encode("abc de"))
    assert "".join(pieces) == "ab"                  # 4 characters (len("\ndef ") - 1) held back
    streamer.end()
    assert "".join(pieces) == "abc de" and not streamer.stopped


def test_generate_text_streams_what_it_returns():
    tok = CharTokenizer.from_text(ALPHABET)
    model = scripted(tok, ["ab cd\n\nef"], prompt_len=1)
    pieces = []
    out = generate_text(model, tok, "a", 20, stop=("\n\n",), greedy=True, on_text=pieces.append)
    assert out == "ab cd" == "".join(pieces)


def test_bad_stop_strings_and_prompts_are_refused():
    tok = CharTokenizer.from_text(ALPHABET)
    model = scripted(tok, ["ab"], prompt_len=1)
    with pytest.raises(ValueError, match="non-empty"):
        generate_text(model, tok, "a", 5, stop=("",))
    with pytest.raises(ValueError, match="same number of tokens"):
        generate_text(model, tok, ["a", "ab"], 5)
    with pytest.raises(ValueError, match="one flag per row"):
        generate(model, np.array([[1]]), 3, stopping_criteria=lambda idx, step: np.array([True, False]))


def test_cli_stop_flag_interprets_escapes(tmp_path, capsys):
    corpus = tmp_path / "text.txt"
    corpus.write_text(("ab cd\n\nef ab\ncd\n\n" * 200))
    run = str(tmp_path / "gpt")
    assert main(["train", "--corpus", str(corpus), "--preset", "nano", "--seq-len", "16", "--steps", "4",
                 "--n-layer", "1", "--n-embd", "24", "--n-head", "2", "--batch-size", "4", "--eval-batches", "1",
                 "--warmup-steps", "1", "--log-interval", "100", "--samples", "0", "--out", run,
                 "--backend", "numpy"]) == 0
    capsys.readouterr()
    sampling = ["--max-new-tokens", "60", "--temperature", "1.5", "--seed", "3"]
    assert main(["generate", run, "--prompt", "ab", *sampling]) == 0
    full = capsys.readouterr().out[len("ab"):-1]                  # the continuation, without the final "\n"
    assert "\n" in full[1:]                                      # the sample has a line break to stop at
    # --stop '\n' as a shell passes it: a backslash and an n, which the CLI turns into a newline
    assert main(["generate", run, "--prompt", "ab", *sampling, "--stop", "\\n", "--stop", "zzz"]) == 0
    assert capsys.readouterr().out == "ab" + full[: full.index("\n")] + "\n"
