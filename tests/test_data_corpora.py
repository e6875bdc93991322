"""minilm.data corpora: Python's own texts, local files and folders, WordNet and fortunes (Debian)."""

import os
import sysconfig
from pathlib import Path
from pydoc_data.topics import topics

import pytest

from minilm.data import (CorpusNotInstalledError, fortune_records, fortunes_zh_records, list_corpora, load_corpus, read_synsets,
                         stdlib_text, wordnet_text)
from minilm.data.corpora import FORTUNES_DIR, _stdlib_files
from minilm.data.wordnet import WORDNET_DIR

needs_wordnet = pytest.mark.skipif(
    not (WORDNET_DIR / "data.noun").is_file(), reason="WordNet not installed: apt-get install wordnet-base"
)
needs_fortunes = pytest.mark.skipif(not FORTUNES_DIR.is_dir(), reason="fortunes not installed: apt-get install fortunes")


def test_pydoc_is_deterministic_prose_in_sorted_topic_order():
    text = load_corpus("pydoc")
    assert text == load_corpus("pydoc") and len(text) > 100_000
    keys = sorted(topics)
    first, last = topics[keys[0]].strip("\n"), topics[keys[-1]].strip("\n")
    assert text.startswith(first) and text.rstrip("\n").endswith(last)
    assert "\n\n" in text and text.endswith("\n")


def test_stdlib_files_skip_tests_and_site_packages():
    root = Path(sysconfig.get_paths()["stdlib"])
    files = _stdlib_files(root)
    rel = [f.relative_to(root).as_posix() for f in files]
    assert "os.py" in rel and "json/decoder.py" in rel
    assert rel == sorted(rel)
    assert not any(part in ("test", "tests", "site-packages") for r in rel for part in r.split("/"))


def test_stdlib_cap_is_a_prefix_cut_at_a_line_end():
    small, big = stdlib_text(max_chars=20_000), stdlib_text(max_chars=60_000)
    assert 0 < len(small) <= 20_000 and len(big) <= 60_000
    assert big.startswith(small) and small.endswith("\n")
    with pytest.raises(ValueError, match="max_chars"):
        stdlib_text(max_chars=0)
    assert load_corpus("stdlib", max_chars=20_000) == small
    full_start = load_corpus("pydoc")[:5000]
    capped = load_corpus("pydoc", max_chars=5000)
    assert full_start.startswith(capped) and capped.endswith("\n") and len(capped) > 4000


def test_local_file_and_folder(tmp_path):
    (tmp_path / "one.txt").write_text("héllo\nworld\n", encoding="utf-8")
    assert load_corpus(tmp_path / "one.txt") == "héllo\nworld\n"
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second\n\n\n")
    (folder / "a.txt").write_text("first")
    (folder / "sub" / "c.md").write_text("third\n")
    (folder / ".hidden").write_text("never")
    assert load_corpus(str(folder)) == "first\n\nsecond\n\nthird\n"  # sorted by relative path, blank line between
    assert load_corpus(folder, max_chars=10) == "first\n\n"


def test_local_errors_name_the_file(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        load_corpus(folder)
    (folder / "good.txt").write_text("fine")
    (folder / "bad.txt").write_bytes(b"caf\xe9 au lait")
    with pytest.raises(ValueError, match=r"bad\.txt is not UTF-8 text \(byte 3"):
        load_corpus(folder)
    with pytest.raises(ValueError, match="neither a known corpus.*pydoc"):
        load_corpus(str(tmp_path / "missing.txt"))


def test_a_name_wins_over_a_path_but_a_path_object_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("pydoc").write_text("my own file")
    assert load_corpus("pydoc") != "my own file"
    assert load_corpus(Path("pydoc")) == "my own file"


def test_list_corpora_names():
    names = list_corpora()
    assert {"pydoc", "stdlib", "wordnet", "fortunes", "shakespeare"} <= set(names)
    assert all(isinstance(d, str) and d for d in names.values())


# ---------------------------------------------------------------- WordNet

WORDNET_SAMPLE = (
    "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    "  2 Princeton University under the following license.  \n"
    '02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 000 | a member of the genus Canis (probably '
    'descended from the common wolf); occurs in many breeds; "the dog barked all night"  \n'
    "00014358 00 s 02 abounding 0 galore(ip) 0 001 & 00013887 a 0000 | existing in abundance; "
    '"abounding confidence"; "whiskey galore"  \n'
    "00006024 03 n 01 heterotroph 0 001 @ 00004475 n 0000 | an organism that depends on complex organic substances  \n"
)


def write_wordnet(root, parts=("noun",)):
    root.mkdir(exist_ok=True)
    for p in parts:
        (root / f"data.{p}").write_text(WORDNET_SAMPLE)
    return root


def test_wordnet_line_format(tmp_path):
    root = write_wordnet(tmp_path / "wn")
    dog, abounding, heterotroph = read_synsets(["noun"], root=root)
    assert (dog.pos, dog.offset, dog.lexname) == ("n", 2084071, "noun.animal")
    assert dog.words == ("dog", "domestic dog", "Canis familiaris")
    assert dog.definition == "a member of the genus Canis (probably descended from the common wolf); occurs in many breeds"
    assert dog.examples == ("the dog barked all night",)
    assert abounding.pos == "s" and abounding.words == ("abounding", "galore") and abounding.lexname == "adj.all"
    assert abounding.examples == ("abounding confidence", "whiskey galore")
    assert heterotroph.examples == () and heterotroph.lexname == "noun.Tops"
    text = wordnet_text(parts=["noun"], root=root, exclude=[("s", 14358)])
    assert text.splitlines() == [dog.definition, "the dog barked all night", heterotroph.definition]
    assert wordnet_text(parts=["noun"], root=root, include_examples=False).count("\n") == 3


def test_wordnet_missing_says_how_to_install(tmp_path):
    with pytest.raises(CorpusNotInstalledError) as e:
        list(read_synsets(root=tmp_path))
    assert "apt-get install -y wordnet-base" in str(e.value) and "data.noun" in str(e.value)
    assert isinstance(e.value, FileNotFoundError)


def test_wordnet_malformed_line(tmp_path):
    (tmp_path / "data.verb").write_text("0000 zz v | nothing\n")
    with pytest.raises(ValueError, match=r"data\.verb:1"):
        list(read_synsets(["verb"], root=tmp_path))


@needs_wordnet
def test_real_wordnet_verbs():
    verbs = list(read_synsets(["verb"]))
    assert len(verbs) > 10_000 and all(s.lexname.startswith("verb.") for s in verbs)
    breathe = next(s for s in verbs if s.words[:2] == ("breathe", "take a breath"))
    assert breathe.lexname == "verb.body" and "air" in breathe.definition
    with_examples = sum(bool(s.examples) for s in verbs)
    assert with_examples > len(verbs) // 2


@needs_wordnet
def test_real_wordnet_corpus_by_name():
    text = load_corpus("wordnet")
    assert len(text) > 5_000_000 and "the dog barked all night\n" in text


# ---------------------------------------------------------------- fortunes


def test_fortune_format(tmp_path):
    (tmp_path / "jokes").write_text("First one.\n%\nSecond,\n\n  two lines.\n%\n%\nThird\n")
    (tmp_path / "jokes.dat").write_bytes(bytes(range(256)))  # binary index: skipped
    os.symlink(tmp_path / "jokes", tmp_path / "jokes.u8")
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "rude").write_text("never read\n%\n")
    (tmp_path / "art").write_text("Alpha\n%\n")
    assert fortune_records(tmp_path) == ["Alpha", "First one.", "Second,\n\n  two lines.", "Third"]


def test_fortunes_zh_kept_apart_and_uncoloured(tmp_path):
    (tmp_path / "jokes").write_text("English.\n%\n")
    (tmp_path / "tang300").write_text("\x1b[32m\u300a\u9759\u591c\u601d\u300b\x1b[m\n\u5e8a\u524d\u660e\u6708\u5149\n%\n",
                                      encoding="utf-8")
    (tmp_path / "song100").write_text("\u5b8b\n%\n", encoding="utf-8")
    assert fortune_records(tmp_path) == ["English."]                   # the Chinese files stay out
    with pytest.raises(CorpusNotInstalledError, match="apt-get install -y fortunes-zh"):
        fortunes_zh_records(tmp_path)                                  # "chinese" is missing
    (tmp_path / "chinese").write_text("\u4e2d\n%\n", encoding="utf-8")
    assert fortunes_zh_records(tmp_path) == ["\u4e2d", "\u5b8b", "\u300a\u9759\u591c\u601d\u300b\n\u5e8a\u524d\u660e\u6708\u5149"]


def test_fortunes_missing_says_how_to_install(tmp_path):
    with pytest.raises(CorpusNotInstalledError, match="apt-get install -y fortunes"):
        fortune_records(tmp_path / "nothing")


@needs_fortunes
def test_real_fortunes():
    records = fortune_records()
    assert len(records) > 1_000 and not any(line == "%" for r in records[:2000] for line in r.splitlines())
    text = load_corpus("fortunes")
    assert text.startswith(records[0]) and len(text) > 1_000_000
