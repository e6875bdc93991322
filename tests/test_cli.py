"""The `minilm` command end to end on a tiny corpus."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from minilm.cli import build_parser, main
from minilm.generate import generate
from minilm.pretrain import load_pretrained

TEXT = ("Python is a programming language. The return statement ends a function. " * 30 + "\n") * 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(TEXT)
    return str(path)


def generate_text(model, tokenizer, prompt, max_new_tokens, **options):
    """What `minilm generate` should print for one sample: the prompt and its continuation."""
    out = generate(model, np.array([tokenizer.encode(prompt)]), max_new_tokens, **options)
    return tokenizer.decode(out[0].tolist())


TINY = ["--n-layer", "1", "--n-embd", "24", "--n-head", "2", "--batch-size", "4", "--eval-batches", "2",
        "--warmup-steps", "2", "--log-interval", "100"]


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--model", "--preset", "--corpus", "--tokenizer", "--steps", "--batch-size", "--lr", "--out",
                 "--resume", "--seed", "--grad-accum", "--dropout"):
        assert flag in out
    for command in ("generate", "eval", "fill-mask", "info"):
        assert command in build_parser().format_help()


def test_train_generate_eval_info_for_gpt(corpus, tmp_path, capsys):
    run = str(tmp_path / "gpt")
    assert main(["train", "--corpus", corpus, "--preset", "nano", "--seq-len", "16", "--steps", "8",
                 "--eval-interval", "4", "--out", run, "--backend", "numpy"] + TINY) == 0
    captured = capsys.readouterr()
    assert "final: " in captured.out
    assert (tmp_path / "gpt" / "loss.png").is_file()
    # one sample (the default --samples 1) at each of the 2 evaluations: 120 new characters each
    samples = re.findall(r"--- sample ---\n(.*?)\n--------------", captured.err, flags=re.S)
    assert len(samples) == 2 and all(len(text) == 120 for text in samples)

    # generate prints what the library generates from the saved model, with the options passed on
    model, tok, _ = load_pretrained(run)
    sampling = ["--max-new-tokens", "20", "--temperature", "0.8", "--top-k", "5"]
    assert main(["generate", run, "--prompt", "Python ", *sampling, "--seed", "1"]) == 0
    seed1 = capsys.readouterr().out
    assert seed1 == generate_text(model, tok, "Python ", 20, temperature=0.8, top_k=5,
                                  rng=np.random.default_rng(1)) + "\n"
    assert main(["generate", run, "--prompt", "Python ", *sampling, "--num-samples", "2"]) == 0
    first, second = capsys.readouterr().out.split("-" * 40 + "\n")
    assert first == generate_text(model, tok, "Python ", 20, temperature=0.8, top_k=5,
                                  rng=np.random.default_rng(0)) + "\n"        # the default --seed is 0
    assert second == seed1                                                   # sample k uses seed + k
    assert first != second
    assert main(["generate", run, "--prompt", "Python ", "--max-new-tokens", "20", "--top-p", "0.9"]) == 0
    assert capsys.readouterr().out == generate_text(model, tok, "Python ", 20, top_p=0.9,
                                                    rng=np.random.default_rng(0)) + "\n"
    assert main(["eval", run, "--batches", "2"]) == 0
    assert "val_loss" in capsys.readouterr().out
    assert main(["info", run]) == 0
    assert "parameters:" in capsys.readouterr().out


def read_metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_continues_from_the_checkpoint_with_the_losses_of_an_uninterrupted_run(corpus, tmp_path, capsys):
    """6 steps, then `--resume --steps 10`, equals 10 steps in one go (bit-exact on one machine: same
    data, same arithmetic). --min-lr-ratio 1 keeps the lr flat after the warm-up, so the first run's
    schedule (6 steps long) is the same as the long run's."""
    common = ["train", "--corpus", corpus, "--preset", "nano", "--seq-len", "16", "--eval-interval", "5",
              "--min-lr-ratio", "1.0", "--backend", "numpy"] + TINY
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(common + ["--steps", "10", "--out", str(full)]) == 0
    assert main(common + ["--steps", "6", "--out", str(tmp_path / "first")]) == 0
    (tmp_path / "first").rename(part)                    # a run folder that was moved still resumes
    capsys.readouterr()
    assert main(["train", "--resume", "--steps", "10", "--out", str(part), "--backend", "numpy"]) == 0
    err = capsys.readouterr().err
    assert "from step 6 to 10" in err and "steps 6 -> 10" in err      # the new total is reported
    resumed, uninterrupted = read_metrics(part), read_metrics(full)
    assert [r["step"] for r in resumed] == list(range(1, 11))
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in uninterrupted]
    assert [r["lr"] for r in resumed] == [r["lr"] for r in uninterrupted]
    assert resumed[-1]["val_loss"] == uninterrupted[-1]["val_loss"]


def test_fill_mask_with_a_bert_run(corpus, tmp_path, capsys):
    run = str(tmp_path / "bert")
    assert main(["train", "--model", "bert", "--preset", "bert-tiny", "--tokenizer", "bpe", "--vocab-size", "300",
                 "--corpus", corpus, "--seq-len", "32", "--steps", "4", "--eval-interval", "4", "--out", run] + TINY) == 0
    assert "mlm_acc" in capsys.readouterr().out
    assert main(["fill-mask", run, "The return [MASK] ends a function.", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("[MASK] at token") == 1
    # the printed candidates are the model's top 3 at that position, with their softmax probabilities
    model, tok, _ = load_pretrained(run)
    ids = [tok.token_to_id("[CLS]")] + tok.encode("The return[MASK] ends a function.") + [tok.token_to_id("[SEP]")]
    pos = ids.index(tok.token_to_id("[MASK]"))
    x = np.array([ids])
    logits = model(x, attention_mask=np.ones_like(x), token_type_ids=np.zeros_like(x)).numpy()[0, pos]
    probs = np.exp(logits.astype(np.float64) - logits.max())
    probs /= probs.sum()
    best = np.argsort(-probs)[:3]
    assert out.startswith(f"[MASK] at token {pos}: ")
    rest = out[len(f"[MASK] at token {pos}: "):]
    for t in best:                     # probabilities compared to +-0.001: the 3rd decimal may round either way
        label = f"{tok.decode([int(t)])!r} "
        assert rest.startswith(label), (rest, label)
        assert float(rest[len(label):len(label) + 5]) == pytest.approx(probs[t], abs=1.1e-3)
        rest = rest[len(label) + 5:].removeprefix(", ")
    assert rest == "\n"
    assert main(["fill-mask", run, "The return [MASK] ends a function."]) == 0
    assert len(re.findall(r" \d\.\d{3}", capsys.readouterr().out)) == 5          # the default --top is 5


def test_errors_are_reported_not_tracebacks(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "error" in capsys.readouterr().err
    missing_corpus = ["train", "--corpus", str(tmp_path / "nope.txt"), "--steps", "1", "--out", str(tmp_path / "r")]
    assert main(missing_corpus) == 2


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "minilm.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout
