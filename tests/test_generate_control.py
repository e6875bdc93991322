"""Banned tokens and logit bias: in sample_next_token, generate, generate_text and `minilm generate`."""
import numpy as np
import pytest

from minilm.cli import _token_bias, main
from minilm.generate import generate, generate_text
from minilm.models import GPT, GPTConfig
from minilm.pretrain import load_pretrained
from minilm.sampling import apply_logit_controls, sample_next_token, softmax


def tiny_gpt(seed=0, vocab=11):
    return GPT(GPTConfig.preset("nano", vocab_size=vocab, block_size=16, n_layer=1, n_embd=24, n_head=2),
               generator=np.random.default_rng(seed)).eval()


def test_banned_tokens_never_appear_in_many_samples():
    model, prompt = tiny_gpt(), np.array([[1, 2], [3, 4], [5, 6], [7, 8]])
    free = generate(model, prompt, 60, rng=np.random.default_rng(0), temperature=1.5)[:, 2:]
    common = np.bincount(free.ravel(), minlength=11).argsort()[-3:]          # the 3 most frequent tokens
    assert np.isin(free, common).mean() > 0.3                                # they matter without the ban
    out = generate(model, prompt, 60, rng=np.random.default_rng(0), temperature=1.5, banned_tokens=common)
    assert not np.isin(out[:, 2:], common).any()                             # 240 draws, none banned
    out = generate(model, prompt, 60, rng=np.random.default_rng(1), temperature=1.5, top_k=2, top_p=0.5,
                   banned_tokens=common.tolist(), use_cache=False)
    assert not np.isin(out[:, 2:], common).any()                             # the filters cannot bring them back


def test_greedy_picks_the_next_best_token():
    logits = np.array([[0.5, 3.0, 2.0, 2.5], [4.0, 1.0, 0.0, 3.0]], np.float32)
    assert sample_next_token(logits, np.random.default_rng(0), greedy=True).tolist() == [1, 0]
    assert sample_next_token(logits, np.random.default_rng(0), greedy=True, banned_tokens=[1, 0]).tolist() == [3, 3]
    assert sample_next_token(logits, np.random.default_rng(0), temperature=0, banned_tokens=[1, 3]).tolist() == [2, 0]
    model = tiny_gpt(seed=2)
    prompt = np.array([[1, 2, 3]])
    first = model(prompt).numpy()[0, -1]                                     # (V,)
    best, second = np.argsort(-first)[:2]
    out = generate(model, prompt, 1, greedy=True, banned_tokens=[int(best)])
    assert out[0, -1] == second


def test_a_large_positive_bias_forces_a_token_and_a_moderate_one_shifts_the_odds():
    model = tiny_gpt(seed=1)
    out = generate(model, np.array([[1, 2], [3, 4]]), 30, rng=np.random.default_rng(0), logit_bias={7: 100.0})
    assert (out[:, 2:] == 7).all()
    # the bias multiplies a token's odds by e^b: uniform over 4 tokens, bias ln 3 on token 0 -> p = 3 / 6
    draws = sample_next_token(np.zeros((20000, 4), np.float32), np.random.default_rng(0),
                              logit_bias={0: float(np.log(3.0))})
    assert abs(np.mean(draws == 0) - 0.5) < 0.02                             # std of the mean: 0.0035
    assert abs(np.mean(draws == 1) - 1 / 6) < 0.02
    logits = np.array([1.0, -2.0, 0.5, 3.0])
    p = softmax(logits)
    q = softmax(apply_logit_controls(logits, logit_bias={1: 2.0}))
    np.testing.assert_allclose(q, p * np.exp([0, 2.0, 0, 0]) / (p * np.exp([0, 2.0, 0, 0])).sum(), rtol=1e-12)


def test_bias_zero_changes_nothing_and_bias_comes_before_temperature_and_filters():
    model, prompt = tiny_gpt(seed=3), np.array([[0, 5], [7, 7]])
    options = dict(temperature=0.7, top_k=6, top_p=0.9)
    plain = generate(model, prompt, 20, rng=np.random.default_rng(4), **options)
    zero = generate(model, prompt, 20, rng=np.random.default_rng(4), logit_bias={i: 0.0 for i in range(11)}, **options)
    np.testing.assert_array_equal(zero, plain)
    shifted = generate(model, prompt, 20, rng=np.random.default_rng(4), logit_bias={3: 1.5, 8: -2.0}, **options)
    assert not np.array_equal(shifted, plain)
    # the same as adding the bias to the logits by hand, then temperature, top-k, top-p
    logits = np.random.default_rng(5).normal(size=(3, 11)).astype(np.float32)
    add = np.zeros(11, np.float32)
    add[3], add[8] = 1.5, -2.0
    want = sample_next_token(logits + add, np.random.default_rng(6), **options)
    got = sample_next_token(logits, np.random.default_rng(6), logit_bias={3: 1.5, 8: -2.0}, **options)
    np.testing.assert_array_equal(got, want)
    assert apply_logit_controls(logits.astype(np.float32), logit_bias={3: 1.0}).dtype == np.float32


class CharTok:
    """A tokenizer of 11 symbols, enough for generate_text."""
    chars = "abcdefghij "

    def encode(self, text):
        return [self.chars.index(c) for c in text]

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


def test_generate_text_passes_the_controls_through():
    model, tok = tiny_gpt(seed=4), CharTok()
    text = generate_text(model, tok, "abc", 40, rng=np.random.default_rng(0), banned_tokens=tok.encode("aeij "))
    assert len(text) == 40 and not set(text) & set("aeij ")
    assert generate_text(model, tok, "abc", 10, greedy=True, logit_bias={tok.encode("j")[0]: 50.0}) == "j" * 10


@pytest.mark.parametrize("options, error, words", [
    (dict(banned_tokens=[11]), ValueError, ["token id 11", "vocabulary of 11 tokens"]),
    (dict(banned_tokens=[-1]), ValueError, ["token id -1", "11 tokens"]),
    (dict(logit_bias={11: 1.0}), ValueError, ["token id 11", "logit_bias", "11 tokens"]),
    (dict(banned_tokens=range(11)), ValueError, ["bans all 11 tokens"]),
    (dict(logit_bias={2: float("nan")}), ValueError, ["logit_bias[2]", "not finite"]),
    (dict(logit_bias={2: -float("inf")}), ValueError, ["not finite", "banned_tokens"]),
    (dict(logit_bias=[(2, 1.0)]), TypeError, ["mapping"]),
    (dict(logit_bias={2: "1"}), TypeError, ["logit_bias[2]", "number"]),
    (dict(banned_tokens="abc"), TypeError, ["the text 'abc'", "encode"]),
    (dict(banned_tokens=[1.0]), TypeError, ["int token ids"]),
    (dict(banned_tokens=[True]), TypeError, ["int token ids"]),
])
def test_errors_name_the_problem(options, error, words):
    model = tiny_gpt()
    with pytest.raises(error) as info:
        generate(model, np.array([[1]]), 3, **options)
    assert all(w in str(info.value) for w in words), str(info.value)
    assert str(info.value).startswith("generate:")
    with pytest.raises(error):
        sample_next_token(np.zeros(11, np.float32), np.random.default_rng(0), **options)


def test_overflow_and_fully_banned_rows_are_errors_not_nan():
    with pytest.raises(ValueError, match="overflows the float32 logits"):
        sample_next_token(np.zeros(4, np.float32), np.random.default_rng(0), logit_bias={1: 1e39})
    logits = np.array([[0.0, -np.inf, -np.inf], [0.0, 1.0, 2.0]])            # row 0 allows only token 0
    with pytest.raises(ValueError, match="every token the model allows in a row"):
        sample_next_token(logits, np.random.default_rng(0), banned_tokens=[0])
    assert sample_next_token(logits, np.random.default_rng(0), banned_tokens=[2], greedy=True).tolist() == [0, 1]


# ----- the command line --------------------------------------------------------------------------
TEXT = ("Python is a programming language. The return statement ends a function. " * 30 + "\n") * 8


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ctl")
    (folder / "text.txt").write_text(TEXT)
    out = str(folder / "gpt")
    assert main(["train", "--corpus", str(folder / "text.txt"), "--preset", "nano", "--seq-len", "16",
                 "--steps", "2", "--eval-interval", "2", "--out", out, "--backend", "numpy", "--samples", "0",
                 "--n-layer", "1", "--n-embd", "24", "--n-head", "2", "--batch-size", "4",
                 "--eval-batches", "1", "--warmup-steps", "1"]) == 0
    return out


def test_cli_ban_and_bias(run, capsys):
    capsys.readouterr()
    model, tok, _ = load_pretrained(run)
    common = ["--prompt", "The ", "--max-new-tokens", "80", "--temperature", "2.0"]
    assert main(["generate", run, *common]) == 0
    free = capsys.readouterr().out[len("The "):]
    assert " " in free and "e" in free                                       # an untrained model: any char
    assert main(["generate", run, *common, "--ban", " ", "--ban", "e", "--ban", "\\n"]) == 0
    banned = capsys.readouterr().out[len("The "):-1]                          # the CLI's final newline
    assert len(banned) == 80 and not set(banned) & {" ", "e", "\n"}
    want = generate(model, np.array([tok.encode("The ")]), 80, temperature=2.0, rng=np.random.default_rng(0),
                    banned_tokens=tok.encode(" e\n"))
    assert banned == tok.decode(want[0, 4:].tolist())
    assert main(["generate", run, *common, "--bias", "g=40"]) == 0
    assert capsys.readouterr().out == "The " + "g" * 80 + "\n"
    assert _token_bias("==-2.5") == ("=", -2.5) and _token_bias("\\t=1") == ("\t", 1.0)   # split at the last '='


def test_cli_control_errors(run, capsys):
    capsys.readouterr()
    cases = [(["--ban", "Py"], "--ban 'Py' is 2 tokens"),
             (["--ban", "\u00e9"], "--ban '\u00e9': CharTokenizer.encode"),
             (["--bias", "g=1", "--bias", "g=2"], "two values"),
             (["--bias", "==1"], "not in the vocabulary"),                   # no '=' in this corpus
             ]
    for extra, words in cases:
        assert main(["generate", run, "--max-new-tokens", "3", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("minilm generate: error:") and words in err, err
    for extra, words in [(["--bias", "x"], "expected TEXT=VALUE"), (["--bias", "x=inf"], "finite"),
                         (["--bias", "x=abc"], "finite"), (["--ban", ""], "must not be empty")]:
        with pytest.raises(SystemExit) as info:
            main(["generate", run, *extra])
        assert info.value.code == 2 and words in capsys.readouterr().err
