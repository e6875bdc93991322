"""minilm.data.download against a local HTTP server on 127.0.0.1: success, bad checksum, cut connection, cache reuse."""

import hashlib
import http.server
import threading

import pytest

from minilm.data.download import (REGISTRY, ChecksumMismatchError, DownloadError, RemoteCorpus, default_cache_dir,
                                   download, fetch)

BODY = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 500
SHA = hashlib.sha256(BODY).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    requests: list = []

    def do_GET(self):
        Handler.requests.append(self.path)
        if self.path == "/short.txt":  # promise the whole body, send a third, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[: len(BODY) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path not in ("/corpus.txt", "/other/corpus.txt"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    Handler.requests.clear()


def files_in(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_download_verifies_and_caches(server, tmp_path):
    path = download(f"{server}/corpus.txt", SHA, cache_dir=tmp_path)
    assert path.read_bytes() == BODY and path.parent == tmp_path
    assert path.name == f"{SHA[:12]}-corpus.txt"
    assert files_in(tmp_path) == [path.name]  # no temporary file left behind
    assert Handler.requests == ["/corpus.txt"]

    again = download(f"{server}/corpus.txt", SHA.upper(), cache_dir=tmp_path)  # upper-case hex is accepted
    assert again == path and Handler.requests == ["/corpus.txt"]  # reused: no second request


def test_corrupt_cached_file_is_replaced(server, tmp_path):
    (tmp_path / "c.txt").write_bytes(b"not the corpus")
    path = download(f"{server}/corpus.txt", SHA, cache_dir=tmp_path, filename="c.txt")
    assert path.read_bytes() == BODY and Handler.requests == ["/corpus.txt"]


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(ChecksumMismatchError) as e:
        download(f"{server}/corpus.txt", wrong, cache_dir=tmp_path / "cache")
    message = str(e.value)
    assert wrong in message and SHA in message and f"{server}/corpus.txt" in message
    assert isinstance(e.value, ValueError)
    assert files_in(tmp_path / "cache") == []


def test_interrupted_download_leaves_nothing(server, tmp_path):
    with pytest.raises(DownloadError, match=r"interrupted download") as e:
        download(f"{server}/short.txt", SHA, cache_dir=tmp_path)
    assert f"of {len(BODY)} bytes" in str(e.value) or f"{len(BODY) - len(BODY) // 3} more" in str(e.value)
    assert files_in(tmp_path) == []


def test_http_error_and_bad_arguments(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download(f"{server}/missing.txt", SHA, cache_dir=tmp_path)
    assert files_in(tmp_path) == []
    with pytest.raises(ValueError, match="64 hex digits"):
        download(f"{server}/corpus.txt", "abc", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="plain file name"):
        download(f"{server}/corpus.txt", SHA, cache_dir=tmp_path, filename="../escape.txt")


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MINILM_CACHE", str(tmp_path / "mc"))
    assert default_cache_dir() == tmp_path / "mc"
    monkeypatch.delenv("MINILM_CACHE")
    assert default_cache_dir().parts[-2:] == (".cache", "minilm")


def test_registry_entries_and_fetch_uses_the_cache(tmp_path, monkeypatch):
    for name, entry in REGISTRY.items():
        assert len(entry.sha256) == 64 and entry.url.startswith("https://"), name
    # a cached copy whose hash matches is served without any network access
    entry = RemoteCorpus("http://127.0.0.1:9/never-contacted", SHA, "local.txt", len(BODY), "test entry")
    monkeypatch.setitem(REGISTRY, "local", entry)
    (tmp_path / "local.txt").write_bytes(BODY)
    assert fetch("local", cache_dir=tmp_path).read_bytes() == BODY
    with pytest.raises(KeyError, match="no registered corpus"):
        fetch("nope")
