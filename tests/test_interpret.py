"""minilm.interpret (attention maps, logit lens), the attention page's data, and `minilm viz`."""
import html.parser
import math

import numpy as np
import pytest

from minilm import interpret, viz_attention
from minilm.cli import main
from minilm.data import iter_eval_batches
from minilm.models import GPT, BertConfig, BertForMaskedLM, GPTConfig
from minilm.objectives import AutoregressiveLM
from minilm.pretrain import load_pretrained
from minilm.random import default_generator
from minilm.tokenizers import CharTokenizer

TEXT = ("Python is a programming language. The return statement ends a function. " * 30 + "\n") * 8
NASTY = 'a <b> & "c" \'d\' </script><!-- %DATA% \u2028 x'


def sharpen(blocks, factor=20.0):
    """Scale the query/key/value projections so attention is peaked (a fresh model's is nearly uniform,
    and a test comparing heads would compare near-equal maps)."""
    for block in blocks:
        block.self_attn.in_proj.weight.data[...] *= factor


@pytest.fixture
def tiny_gpt():
    tok = CharTokenizer.from_text(NASTY + TEXT)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=3, n_embd=24, block_size=48, dropout=0.0))
    sharpen(model.blocks)
    return model, tok


# ----- an independent NumPy forward pass: the oracle for the captured attention -----------------
def _ln(x, w, b, eps):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _linear(x, layer):
    y = x @ layer.weight.data.astype(np.float64).T
    return y if layer.bias is None else y + layer.bias.data


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def numpy_gpt_attention(model, ids):
    """(attentions (L, H, T, T), residual streams (L+1, T, C)) of a pre-LN GPT, in float64, from its weights."""
    p = lambda t: t.data.astype(np.float64)
    t = len(ids)
    x = p(model.wte.weight)[ids] + p(model.wpe.weight)[:t]
    eps = model.config.layer_norm_epsilon
    maps, streams = [], [x]
    for block in model.blocks:
        att = block.self_attn
        h = _ln(x, p(block.norm1.weight), p(block.norm1.bias), eps)
        q, k, v = np.split(_linear(h, att.in_proj), 3, axis=-1)
        heads = lambda z: z.reshape(t, att.num_heads, att.head_dim).transpose(1, 0, 2)   # (H, T, D)
        q, k, v = heads(q), heads(k), heads(v)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(att.head_dim)
        scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)
        w = np.exp(scores - scores.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        maps.append(w)
        y = (w @ v).transpose(1, 0, 2).reshape(t, -1)
        x = x + _linear(y, att.out_proj)
        h = _ln(x, p(block.norm2.weight), p(block.norm2.bias), eps)
        x = x + _linear(_gelu_tanh(_linear(h, block.ff.linear1)), block.ff.linear2)
        streams.append(x)
    return np.stack(maps), np.stack(streams)


def test_captured_attention_equals_an_independent_numpy_forward(tiny_gpt):
    model, tok = tiny_gpt
    ids = tok.encode(NASTY)
    tr = interpret.trace(model, ids)
    expected, streams = numpy_gpt_attention(model, np.array(ids))
    assert tr.attentions.shape == (2, 3, len(ids), len(ids))
    np.testing.assert_allclose(tr.attentions, expected, atol=2e-5)
    np.testing.assert_allclose(tr.hidden, streams, rtol=1e-4, atol=1e-4)
    assert expected.max() > 0.9                               # peaked maps: the comparison means something
    # every row is a probability distribution; nothing after the query is seen (causal)
    np.testing.assert_allclose(tr.attentions.sum(-1), 1.0, atol=1e-5)
    upper = np.triu(np.ones((len(ids), len(ids)), bool), k=1)
    assert (tr.attentions[..., upper] == 0).all()
    assert tr.causal


def test_attention_maps_match_the_model_in_float64(tiny_gpt):
    model, tok = tiny_gpt
    model.double()
    ids = tok.encode("The return statement")
    expected, _ = numpy_gpt_attention(model, np.array(ids))
    np.testing.assert_allclose(interpret.attention_maps(model, ids), expected, rtol=1e-10, atol=1e-12)


def test_logit_lens_ends_at_the_models_logits_and_starts_at_the_embeddings(tiny_gpt):
    model, tok = tiny_gpt
    ids = tok.encode("The return statement ends")
    tr = interpret.trace(model, ids)
    lens = interpret.logit_lens(model, ids)
    assert lens.shape == (3, len(ids), tok.vocab_size)
    model.eval()
    np.testing.assert_allclose(lens[-1], model(np.array([ids])).numpy()[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(tr.logits, lens[-1])
    # layer 0: the read-out applied to the embeddings alone
    w = model.wte.weight.data.astype(np.float64)
    x0 = w[ids] + model.wpe.weight.data[: len(ids)]
    z = _ln(x0, model.ln_f.weight.data, model.ln_f.bias.data, model.config.layer_norm_epsilon)
    np.testing.assert_allclose(lens[0], z @ w.T, rtol=1e-4, atol=1e-4)


def test_trace_restores_training_mode_and_checks_its_input(tiny_gpt):
    model, tok = tiny_gpt
    model.train()
    interpret.trace(model, tok.encode("ab"))
    assert model.training and model.blocks[0].self_attn.training
    with pytest.raises(ValueError, match="context of 48"):
        interpret.trace(model, [0] * 49)
    with pytest.raises(ValueError, match="non-empty"):
        interpret.trace(model, [])
    with pytest.raises(IndexError, match="outside the vocabulary"):
        interpret.trace(model, [tok.vocab_size])
    with pytest.raises(ValueError, match="one sequence"):
        interpret.trace(model, [[0, 1], [1, 0]])
    with pytest.raises(TypeError, match="GPT"):
        interpret.trace(object(), [0])


def test_lens_losses_last_layer_is_the_validation_loss(tiny_gpt):
    model, tok = tiny_gpt
    tokens = np.array(tok.encode(TEXT[:2000]))
    batches = lambda: iter_eval_batches(tokens, 16, 4, 3)
    losses = interpret.lens_losses(model, batches())
    assert losses.shape == (3,)
    model.eval()
    assert losses[-1] == pytest.approx(AutoregressiveLM().evaluate(model, batches())["val_loss"], rel=1e-5)
    # the loss of a layer is the mean of -log p(next token) under its read-out, computed by hand
    x, y = next(iter_eval_batches(tokens, 16, 4, 1))
    one = interpret.lens_losses(model, [(x, y)])
    lens0 = np.stack([interpret.logit_lens(model, row)[0] for row in x])      # (B, T, V)
    p = np.exp(interpret.log_softmax(lens0))
    assert one[0] == pytest.approx(-np.log(np.take_along_axis(p, y[..., None], -1)).mean(), rel=1e-6)


def test_bert_attention_is_bidirectional_and_equals_output_attentions():
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=20, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    model = BertForMaskedLM(cfg, generator=default_generator())
    sharpen(model.bert.blocks, 10.0)
    ids = np.array([1, 5, 9, 7, 3, 2])
    tr = interpret.trace(model, ids)
    model.eval()
    out = model.bert(ids[None], output_attentions=True)
    np.testing.assert_array_equal(tr.attentions, np.stack([a.numpy()[0] for a in out.attentions]))
    np.testing.assert_allclose(tr.attentions.sum(-1), 1.0, atol=1e-5)
    assert not tr.causal and (tr.attentions[..., np.triu_indices(6, 1)[0], np.triu_indices(6, 1)[1]] > 0).all()
    np.testing.assert_allclose(tr.logits, model(ids[None]).numpy()[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="next-token"):
        interpret.lens_losses(model, [])


def test_format_lens_table_rows_are_each_layers_top_token(tiny_gpt):
    model, tok = tiny_gpt
    ids = tok.encode("ab\n c")
    lens = interpret.logit_lens(model, ids)
    table = interpret.format_lens_table(interpret.token_strings(tok, ids), lens, tok).splitlines()
    assert table[0].split() == ["input", "a", "b", "\\n", "\u2423", "c"]
    assert [line.split()[0] for line in table[2:5]] == ["embed", "layer", "layer"]
    for layer, line in zip(range(3), table[2:5]):
        shown = line.split()[-len(ids):]
        # (a long escape such as \u2028 is cut to the table's 5 characters per column)
        expected = [interpret.show_token(tok.decode([int(i)]))[:5] for i in lens[layer].argmax(-1)]
        assert shown == expected


# ----- the page's embedded data ------------------------------------------------------------------
class _ScriptData(html.parser.HTMLParser):
    """The text of the JSON data element as a real HTML parser sees it."""

    def __init__(self):
        super().__init__()
        self.inside, self.text, self.scripts = False, "", 0

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts += 1
            self.inside = dict(attrs).get("id") == viz_attention.DATA_ID

    def handle_endtag(self, tag):
        self.inside = False

    def handle_data(self, data):
        if self.inside:
            self.text += data


def test_page_embeds_exactly_the_models_attention_weights(tiny_gpt, tmp_path):
    model, tok = tiny_gpt
    ids = tok.encode(NASTY)
    path = tmp_path / "page.html"
    viz_attention.write_page(path, viz_attention.model_page_data(model, tok, ids, title="t"))
    data = viz_attention.read_page_data(path.read_text(encoding="utf-8"))
    expected = interpret.attention_maps(model, ids).astype(np.float32)
    assert data["attention"].dtype == np.float32 and data["shape"] == list(expected.shape)
    np.testing.assert_array_equal(data["attention"], expected)          # bit for bit, not approximately
    assert data["tokens"] == list(NASTY) and data["causal"] is True
    lens = interpret.logit_lens(model, ids)
    assert [top[0][0] for top in data["lens"]["top"][-1]] == [tok.decode([int(i)]) for i in lens[-1].argmax(-1)]
    assert data["lens"]["targets"] == list(NASTY[1:]) + [None]


def test_page_escapes_tokens_and_title_and_needs_no_network(tmp_path):
    tokens = ["</script>", "<!--", "&amp;", '"', "'", "%DATA%", "\u2028", "<b>x</b>"]
    t = len(tokens)
    weights = np.full((1, 2, t, t), 1.0 / t, np.float32)
    title = 'Run <b>"x"</b> & %DATA_ID%'
    page = viz_attention.render_page(viz_attention.page_data(weights, tokens, title=title))
    assert page.lower().count("</script") == 2                 # the data's own closing tag and the code's
    assert "<b>" not in page and "&lt;b&gt;&quot;x&quot;&lt;/b&gt; &amp; %DATA_ID%" in page
    for external in ("http://", "https://", "src=", "<link", "@import", "url("):
        assert external not in page
    parser = _ScriptData()
    parser.feed(page)
    assert parser.scripts == 2
    import json
    parsed = json.loads(parser.text)                            # what the browser's JSON.parse reads
    assert parsed["tokens"] == tokens and parsed["title"] == title
    assert viz_attention.read_page_data(page)["tokens"] == tokens


def test_page_data_refuses_bad_input():
    with pytest.raises(ValueError, match="shape"):
        viz_attention.page_data(np.zeros((1, 1, 3, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        viz_attention.page_data(np.full((1, 1, 2, 2), np.nan), ["a", "b"])
    with pytest.raises(ValueError, match="shorter text"):
        viz_attention.page_data(np.zeros((64, 64, 32, 32)), ["a"] * 32)
    cross = viz_attention.page_data(np.full((1, 1, 2, 3), 1 / 3), ["x", "y", "z"], query_tokens=["p", "q"])
    assert cross["shape"] == [1, 1, 2, 3]                       # cross-attention: queries and keys differ


# ----- the command line ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("viz")
    corpus = folder / "text.txt"
    corpus.write_text(TEXT)
    run = str(folder / "gpt")
    assert main(["train", "--corpus", str(corpus), "--preset", "nano", "--seq-len", "16", "--steps", "3",
                 "--n-layer", "2", "--n-embd", "24", "--n-head", "2", "--batch-size", "4", "--eval-batches", "2",
                 "--eval-interval", "3", "--log-interval", "100", "--samples", "0", "--out", run,
                 "--backend", "numpy"]) == 0
    return run


def test_cli_viz_attention_writes_the_models_weights(gpt_run, tmp_path, capsys):
    out = tmp_path / "page.html"
    text = "The return"
    assert main(["viz", "attention", gpt_run, "--text", text, "--out", str(out)]) == 0
    assert "2 layers x 2 heads over 10 tokens" in capsys.readouterr().out
    data = viz_attention.read_page_data(out.read_text(encoding="utf-8"))
    model, tok, _ = load_pretrained(gpt_run)
    np.testing.assert_array_equal(data["attention"], interpret.attention_maps(model, tok.encode(text)))
    assert data["tokens"] == list(text) and "gpt" in data["title"].lower()
    assert not list(tmp_path.glob(".*.tmp"))                    # written atomically: no temporary file left


def test_cli_viz_lens_prints_the_table_and_per_layer_losses(gpt_run, capsys):
    assert main(["viz", "lens", gpt_run, "--text", "The return", "--batches", "2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["input", "T", "h", "e", "\u2423", "r", "e", "t", "u", "r", "n"]
    losses = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("  ")]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("args, message", [
    (["--text", ""], "--text is empty"),
    (["--text", "a" * 17], "--text is 17 tokens, longer than the model's context of 16 tokens"),
    (["--text", "a\u20ac"], "not in the vocabulary"),
    (["--text", "a", "--out", "{tmp}/missing/page.html"], "the folder {tmp}/missing does not exist"),
    (["--text", "a", "--out", "{tmp}"], "is a folder"),
])
def test_cli_viz_attention_errors(gpt_run, tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "page.html")]
    assert main(["viz", "attention", gpt_run, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minilm viz: error: ") and message.replace("{tmp}", str(tmp_path)) in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "page.html").exists()


def test_cli_viz_attention_missing_run(tmp_path, capsys):
    assert main(["viz", "attention", str(tmp_path / "nope"), "--text", "a", "--out", str(tmp_path / "p.html")]) == 2
    err = capsys.readouterr().err
    assert err == f"minilm viz: error: run folder {tmp_path / 'nope'} does not exist\n"


def test_cli_viz_on_a_bert_run(tmp_path, capsys):
    corpus = tmp_path / "text.txt"
    corpus.write_text(TEXT)
    run = str(tmp_path / "bert")
    assert main(["train", "--model", "bert", "--preset", "bert-tiny", "--tokenizer", "bpe", "--vocab-size", "300",
                 "--corpus", str(corpus), "--seq-len", "16", "--steps", "2", "--eval-interval", "2",
                 "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--batch-size", "4", "--eval-batches", "1",
                 "--out", run, "--backend", "numpy"]) == 0
    capsys.readouterr()
    out = tmp_path / "bert.html"
    assert main(["viz", "attention", run, "--text", "The return statement", "--out", str(out)]) == 0
    data = viz_attention.read_page_data(out.read_text(encoding="utf-8"))
    model, tok, _ = load_pretrained(run)
    ids = [tok.token_to_id("[CLS]")] + tok.encode("The return statement") + [tok.token_to_id("[SEP]")]
    np.testing.assert_array_equal(data["attention"], interpret.attention_maps(model, ids))
    assert data["tokens"][0] == "[CLS]" and data["tokens"][-1] == "[SEP]" and data["causal"] is False
    assert data["lens"]["kind"] == "token at the position"
    assert main(["viz", "attention", run, "--text", "a" * 15, "--out", str(out)]) == 2
    assert "(with [CLS] and [SEP]), longer than the model's context of 16" in capsys.readouterr().err
    assert main(["viz", "lens", run, "--text", "The return", "--batches", "1"]) == 2
    captured = capsys.readouterr()
    assert "needs a GPT run" in captured.err and captured.out == ""
