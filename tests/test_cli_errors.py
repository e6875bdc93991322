"""Every mistake a user can make on the command line ends in one line of error and exit code 2 (Ctrl-C: 130).

Most rows run in-process through `minilm.cli.main(argv)`; a few run `python -m minilm.cli` as a real
process, to prove the exit code and stderr a shell sees.
"""
import errno
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import tracemalloc
import urllib.error

import pytest

import minilm.cli as cli
import minilm.generate as gen
from minilm.cli import main
from minilm.data import load_corpus
from minilm.data.download import DownloadError, download
from minilm.models.bert_config import PRESETS as BERT
from minilm.models.gpt_config import PRESETS as GPT
from minilm.pretrain import PretrainConfig, load_text
from minilm.tokenizers.char import CharTokenizer
from minilm.train import Trainer

TEXT = ("Python is a programming language. The return statement ends a function. " * 30 + "\n") * 8
TINY = ["--preset", "nano", "--n-layer", "1", "--n-embd", "24", "--n-head", "2", "--seq-len", "16",
        "--batch-size", "4", "--eval-batches", "2", "--warmup-steps", "2", "--log-interval", "100", "--backend", "numpy"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(TEXT)
    return str(path)


@pytest.fixture(scope="module")
def good_run(corpus, tmp_path_factory):
    """A finished 2-step GPT run; tests copy it and damage the copy."""
    run = tmp_path_factory.mktemp("runs") / "gpt"
    assert main(["train", "--corpus", corpus, "--steps", "2", "--eval-interval", "2", "--out", str(run)] + TINY) == 0
    return run


@pytest.fixture
def run_copy(good_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    return run


def run_main(argv, capsys):
    """(exit code, stdout, stderr) of main(argv), whether it returns the code or argparse exits."""
    try:
        rc = main(argv)
    except SystemExit as exit_:
        rc = exit_.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *words, code=2, alone=True):
    """Exit code 2, no traceback, one line `minilm <cmd>: error: ...` holding `words`.

    alone: nothing else on stderr but argparse's usage lines (a training run also reports its
    progress on stderr before it fails, so there alone=False)."""
    assert rc == code, err
    assert "Traceback" not in err and "Warning" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith("minilm "), err
    for word in words:
        assert word in lines[0], lines[0]
    if alone:
        others = [line for line in err.splitlines() if line and "error:" not in line]
        assert all(line.startswith(("usage:", " ")) for line in others), err


# ----- values checked when the command line is read (argparse's usage error) --------------------------
PARSE_ERRORS = [
    (["train", "--eval-interval", "0"], "--eval-interval"),
    (["train", "--ckpt-interval", "0"], "--ckpt-interval"),
    (["train", "--log-interval", "0"], "--log-interval"),
    (["train", "--steps", "0"], "--steps"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--grad-accum", "0"], "--grad-accum"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--lr", "-1e-3"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--dropout", "1"], "--dropout"),
    (["train", "--dropout", "-0.1"], "--dropout"),
    (["train", "--max-chars", "-5"], "--max-chars"),
    (["train", "--val-fraction", "1"], "--val-fraction"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--steps", "ten"], "--steps"),
    (["train", "--preset", "bert-nano"], "--preset"),
    (["generate", "run", "--max-new-tokens", "-1"], "--max-new-tokens"),
    (["generate", "run", "--max-new-tokens", str(cli.MAX_NEW_TOKENS + 1)], "--max-new-tokens"),
    (["generate", "run", "--temperature", "-1"], "--temperature"),
    (["generate", "run", "--top-k", "0"], "--top-k"),
    (["generate", "run", "--top-p", "0"], "--top-p"),
    (["generate", "run", "--top-p", "1.5"], "--top-p"),
    (["generate", "run", "--num-samples", "0"], "--num-samples"),
    (["fill-mask", "run", "[MASK]", "--top", "-3"], "--top"),
    (["eval", "run", "--batches", "0"], "--batches"),
]


@pytest.mark.parametrize("argv, flag", PARSE_ERRORS, ids=[" ".join(a) for a, _ in PARSE_ERRORS])
def test_bad_values_are_refused_when_read(argv, flag, capsys):
    rc, _, err = run_main(argv, capsys)
    assert_one_line_error(rc, err, flag)


# ----- errors found while running -----------------------------------------------------------------------
def test_out_that_is_a_file_or_lies_under_one(corpus, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub" / "run"):
        rc, _, err = run_main(["train", "--corpus", corpus, "--steps", "1", "--out", str(out)] + TINY, capsys)
        assert_one_line_error(rc, err, str(out), "is a file")


def test_a_read_only_out_folder(corpus, tmp_path, capsys, monkeypatch):
    """Tests run as root, where chmod does not stop writes: the refusal the OS would give is injected."""

    def refuse(self, path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(CharTokenizer, "save", refuse)
    rc, _, err = run_main(["train", "--corpus", corpus, "--steps", "1", "--out", str(tmp_path / "ro")] + TINY, capsys)
    assert_one_line_error(rc, err, "Permission denied", "tokenizer.json")


@pytest.mark.parametrize("where", ["tokenizer", "checkpoint"])
def test_a_full_disk(corpus, tmp_path, capsys, monkeypatch, where):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(*(CharTokenizer, "save", full) if where == "tokenizer" else (Trainer, "save_checkpoint", full))
    out = tmp_path / "full"
    rc, _, err = run_main(["train", "--corpus", corpus, "--steps", "1", "--out", str(out)] + TINY, capsys)
    assert_one_line_error(rc, err, "No space left on device", str(out), alone=where == "tokenizer")


def test_a_diverging_run(corpus, tmp_path, capsys):
    rc, _, err = run_main(["train", "--corpus", corpus, "--steps", "3", "--lr", "1e30", "--out", str(tmp_path / "d")]
                          + TINY, capsys)
    assert_one_line_error(rc, err, "nan", "lower learning rate", alone=False)


def test_a_download_while_offline(tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("MINILM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("urllib.request.urlopen", offline)
    rc, _, err = run_main(["train", "--corpus", "shakespeare", "--steps", "1", "--out", str(tmp_path / "s")], capsys)
    assert_one_line_error(rc, err, "Offline?", "tinyshakespeare.txt", "local file path")


# the run folder's files: each damaged the way the issue found them
DAMAGE = [
    ("checkpoint/config.json", "[1, 2]", "config.json"),
    ("checkpoint/config.json", "{", "config.json"),
    ("tokenizer.json", {"chars": 5}, "'chars'"),
    ("tokenizer.json", {"type": "ByteLevelBPE", "merges": None, "special_tokens": []}, "'merges'"),
    ("tokenizer.json", {"type": "ByteLevelBPE", "merges": [], "special_tokens": 5}, "'special_tokens'"),
    ("tokenizer.json", {"type": "ByteLevelBPE", "merges": [], "special_tokens": [], "pattern": "(a|a)+$"},
     "'pattern'"),
    ("tokenizer.json", "folder", "tokenizer.json"),
]


@pytest.mark.parametrize("name, damage, words", DAMAGE, ids=[f"{n}-{k}" for k, (n, _, _) in enumerate(DAMAGE)])
@pytest.mark.parametrize("command", [["info"], ["generate", "--max-new-tokens", "3"]], ids=["info", "generate"])
def test_a_damaged_run_folder(run_copy, capsys, monkeypatch, name, damage, words, command):
    """A changed tokenizer.json is first caught by its sha256 in the checkpoint; someone crafting a
    folder writes a matching sha256 too, so here that check is switched off to reach the fields."""
    if name == "tokenizer.json" and damage != "folder":
        monkeypatch.setattr("minilm.pretrain.check_tokenizer", lambda *args: None)
    path = run_copy / name
    if damage == "folder":
        path.unlink()
        path.mkdir()
    elif isinstance(damage, dict):
        data = json.loads(path.read_text())
        if "type" in damage:
            data = damage
        else:
            data.update(damage)
        path.write_text(json.dumps(data))
    else:
        path.write_text(damage)
    rc, _, err = run_main([command[0], str(run_copy), *command[1:]], capsys)
    assert_one_line_error(rc, err, words)


def test_run_folder_that_is_missing(tmp_path, capsys):
    rc, _, err = run_main(["generate", str(tmp_path / "nothing")], capsys)
    assert_one_line_error(rc, err, "nothing")


def test_a_prompt_with_characters_the_vocabulary_lacks(good_run, capsys):
    rc, _, err = run_main(["generate", str(good_run), "--prompt", "日本"], capsys)
    assert_one_line_error(rc, err, "'日'")


def test_info_without_a_run_and_the_presets(capsys):
    rc, _, err = run_main(["info"], capsys)
    assert_one_line_error(rc, err, "--presets")
    rc, out, _ = run_main(["info", "--presets"], capsys)
    assert rc == 0
    for name in [*GPT, *BERT]:
        assert f"  {name} " in out


def test_help_names_only_presets_that_exist(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "bert-nano" not in text and "minilm info --presets" in text
    for name in [*GPT, *BERT]:
        assert name in text


def test_the_default_preset_suits_each_family(corpus, tmp_path, capsys):
    """--model bert without --preset or --tokenizer trains the family's defaults (it used to fail on
    GPT's 'baby', then on the character tokenizer, which has no [MASK])."""
    run = tmp_path / "bert"
    rc = main(["train", "--model", "bert", "--vocab-size", "300", "--corpus", corpus,
               "--steps", "1", "--eval-interval", "1", "--out", str(run), "--n-layer", "1", "--n-embd", "32",
               "--n-head", "2", "--seq-len", "32", "--batch-size", "2", "--eval-batches", "1", "--backend", "numpy"])
    err = capsys.readouterr().err
    assert rc == 0, err
    config = json.loads((run / "checkpoint" / "config.json").read_text())
    assert config["pretrain"]["preset"] == cli.DEFAULT_PRESET["bert"] == "bert-mini"
    assert config["pretrain"]["tokenizer"] == cli.DEFAULT_TOKENIZER["bert"] == "bpe"
    assert cli.DEFAULT_TOKENIZER["gpt"] == "char"
    assert cli.resolve_preset("gpt", "auto") == "baby"
    rc, _, err = run_main(["train", "--model", "bert", "--preset", "nano", "--out", str(tmp_path / "x")], capsys)
    assert_one_line_error(rc, err, "not a BERT size", "bert-tiny")


def test_an_existing_run_needs_resume_or_overwrite(good_run, corpus, tmp_path, capsys):
    run = tmp_path / "again"
    shutil.copytree(good_run, run)
    argv = ["train", "--corpus", corpus, "--steps", "2", "--eval-interval", "2", "--out", str(run)] + TINY
    rc, _, err = run_main(argv, capsys)
    assert_one_line_error(rc, err, "--overwrite")
    assert main(argv + ["--overwrite"]) == 0


def test_resume_refuses_the_options_typed_that_would_change_the_run(run_copy, corpus, capsys):
    """The options typed reach prepare(explicit=...): a changed width is refused, not silently ignored
    (with explicit=None it would be); options typed with the run's own values (TINY) are no change."""
    argv = ["train", "--corpus", corpus, "--out", str(run_copy), "--resume"] + TINY
    rc, _, err = run_main(argv + ["--steps", "3", "--n-embd", "32"], capsys)
    assert_one_line_error(rc, err, "--n-embd 32", "--resume cannot change")
    assert main(argv + ["--steps", "3"]) == 0
    assert json.loads((run_copy / "checkpoint" / "config.json").read_text())["pretrain"]["steps"] == 3


# ----- Ctrl-C -------------------------------------------------------------------------------------------
def test_ctrl_c_keeps_the_text_generated_so_far(good_run, capsys, monkeypatch):
    real, calls = gen.sample_next_token, []

    def interrupted_at_the_fifth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(gen, "sample_next_token", interrupted_at_the_fifth)
    rc, out, err = run_main(["generate", str(good_run), "--prompt", "Py", "--max-new-tokens", "50"], capsys)
    assert rc == 130 and "Traceback" not in err and err.strip() == "minilm generate: interrupted"
    assert out.startswith("Py") and len(out) == len("Py") + 4 + 1          # prompt, 4 characters, newline


@pytest.mark.parametrize("command", ["info", "eval"])
def test_ctrl_c_in_any_command_is_130(good_run, capsys, monkeypatch, command):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("minilm.cli.load_pretrained", interrupt)
    rc, _, err = run_main([command, str(good_run)], capsys)
    assert rc == 130 and err.strip() == f"minilm {command}: interrupted"


# ----- inputs read only as far as needed ----------------------------------------------------------------
def test_max_chars_reads_only_what_it_needs(tmp_path):
    big = tmp_path / "big.txt"
    line = "é" + "abcdefghij" * 9 + "\n"                     # 101 characters, 102 bytes
    big.write_text(line * 200_000)                          # 20 MB
    tracemalloc.start()
    try:
        text = load_corpus(big, max_chars=20_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert text == line * (20_000 // len(line))            # cut after the last whole line
    assert peak < 1_000_000, peak                           # reading all 20 MB would cost 20 MB and more
    with pytest.raises(ValueError, match="max_chars"):
        load_corpus(big, max_chars=-1)

    # the pretraining recipe (what `minilm train --max-chars` runs) reads no more than that either
    tracemalloc.start()
    try:
        text = load_text(PretrainConfig(corpus=str(big), max_chars=20_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert text == line * (20_000 // len(line)) and peak < 1_000_000, peak


def test_downloads_stop_at_max_bytes(tmp_path):
    sent = []

    class Endless(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            if self.path == "/announced":
                self.send_header("Content-Length", str(10 ** 9))
            self.end_headers()
            try:
                for _ in range(2000):                       # up to 128 MB, unless the client hangs up
                    self.wfile.write(b"x" * 65536)
                    sent.append(65536)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    os.environ.setdefault("no_proxy", "127.0.0.1")
    try:
        with pytest.raises(DownloadError, match="1000000-byte limit"):
            download(url + "/announced", "0" * 64, cache_dir=tmp_path, max_bytes=1_000_000)
        with pytest.raises(DownloadError, match="1000000-byte limit.*stopped reading"):
            download(url + "/endless", "0" * 64, cache_dir=tmp_path, max_bytes=1_000_000)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert sum(sent) < 50 * 2 ** 20                         # the server was cut off long before 128 MB


# ----- as a real process: the exit code and stderr a shell sees ------------------------------------------
def _cli(*argv, cwd):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "minilm.cli", *argv], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_as_a_real_process(good_run, tmp_path):
    result = _cli("train", "--eval-interval", "0", cwd=tmp_path)
    assert_one_line_error(result.returncode, result.stderr, "--eval-interval")
    (tmp_path / "afile").write_text("x")
    result = _cli("train", "--out", "afile", "--steps", "1", cwd=tmp_path)
    assert_one_line_error(result.returncode, result.stderr, "afile")
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    (run / "checkpoint" / "config.json").write_text("[1, 2]")
    result = _cli("generate", str(run), cwd=tmp_path)
    assert_one_line_error(result.returncode, result.stderr, "config.json")


def test_ctrl_c_as_a_real_process_keeps_the_streamed_text(good_run, tmp_path):
    """SIGINT while generating: exit code 130, one line on stderr, the text so far on stdout."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    process = subprocess.Popen([sys.executable, "-m", "minilm.cli", "generate", str(good_run), "--prompt", "Py",
                                "--max-new-tokens", str(cli.MAX_NEW_TOKENS)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=tmp_path, env=env)
    try:
        first = process.stdout.read(12)                      # streamed: arrives long before the 100,000th token
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=60)
    finally:
        process.kill()
    out = (first + rest).decode()
    assert process.returncode == 130, err
    assert err.decode().splitlines()[-1] == "minilm generate: interrupted" and b"Traceback" not in err
    assert out.startswith("Py") and 12 <= len(out) < cli.MAX_NEW_TOKENS
