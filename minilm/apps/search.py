"""Semantic search: find the passages whose meaning is closest to a query, not just its words.

Dense retrieval in two steps (Reimers & Gurevych 2019, Sentence-BERT; Karpukhin et al. 2020, DPR):

    index   cut every document into passages p_1..p_N and embed each once:  E = [e(p_1); ...; e(p_N)]  (N, H)
    search  embed the query q and score every passage:   s = E e(q)   (N,),  then return the top k

e() is the sentence encoder (all-MiniLM-L6-v2: masked-mean pooling, unit length), so s_i is the cosine
similarity cos(p_i, q). The search is exact: one matrix-vector product over the whole index, which takes
milliseconds for the tens of thousands of passages a laptop folder holds (approximate nearest-neighbour
structures such as HNSW only pay off at millions).

A passage is a paragraph (lines up to a blank line). The encoder reads at most ``max_length`` tokens
and would silently drop the rest, so a longer paragraph is cut at line boundaries (or, for one
very long line, at word boundaries) into pieces that fit.

An index is a folder, written atomically:

    embeddings.npy     (N, H) float32 unit vectors
    passages.jsonl     one {"file", "line", "text"} per row of embeddings.npy (line: 1-based, first line)
    index.json         what was indexed, with which model (its sha256), and which files were skipped
"""
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minilm.io.atomic import atomic_folder, completed_folder

INDEX_FORMAT = "minilm-search-index"
PASSAGE_TOKENS = 200              # under the 256 tokens all-MiniLM-L6-v2 was trained with, [CLS]/[SEP] included


@dataclass(frozen=True)
class Passage:
    file: str          # the path relative to the indexed folder, or "pydoc:<topic>"
    line: int          # 1-based line of the passage's first line in that file
    text: str


@dataclass(frozen=True)
class Hit:
    score: float       # cosine similarity to the query, in [-1, 1]
    file: str
    line: int
    text: str


# ----- reading documents -------------------------------------------------------------------------

def _is_binary(data):
    """NUL bytes, or bytes that are not UTF-8: not a text file we can index."""
    if b"\x00" in data[:8192]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def read_documents(source):
    """(documents, skipped): documents = [(name, text)] of a folder, a file, or "pydoc"; skipped = binary files.

    A folder is read recursively in sorted order, hidden files and folders left out. Files that are
    binary or not UTF-8 are skipped and named; a source with nothing to index is an error.
    """
    if str(source) == "pydoc":
        from pydoc_data.topics import topics
        return [(f"pydoc:{key}", topics[key]) for key in sorted(topics)], []
    root = Path(source)
    if not root.exists():
        raise FileNotFoundError(f"index: {source} does not exist (give a folder, a text file, or 'pydoc')")
    if root.is_file():
        paths, base = [root], root.parent
    else:
        paths, base = [], root
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            paths.extend(Path(folder) / n for n in sorted(names) if not n.startswith("."))
        paths.sort(key=lambda p: p.relative_to(root).as_posix())
    documents, skipped = [], []
    for path in paths:
        data = path.read_bytes()
        name = path.relative_to(base).as_posix()
        if _is_binary(data):
            skipped.append(name)
        elif data.strip():
            documents.append((name, data.decode("utf-8")))
    if not documents:
        what = "is empty" if not paths else f"holds no non-empty UTF-8 text file ({len(skipped)} binary skipped)"
        raise ValueError(f"index: {source} {what}; nothing to index")
    return documents, skipped


# ----- passages ----------------------------------------------------------------------------------

def _paragraphs(text):
    """(first line number, [lines]) for each run of non-blank lines."""
    block, start = [], 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not block:
                start = number
            block.append(line.rstrip())
        elif block:
            yield start, block
            block = []
    if block:
        yield start, block


def _fit(pieces, count, budget, joiner):
    """Greedily group consecutive pieces (lines or words) into chunks of at most `budget` tokens."""
    chunk, used = [], 0
    for piece in pieces:
        n = count(piece)
        if chunk and used + n > budget:
            yield joiner.join(chunk)
            chunk, used = [], 0
        chunk.append(piece)
        used += n
    if chunk:
        yield joiner.join(chunk)


def split_passages(name, text, count_tokens, max_tokens=PASSAGE_TOKENS):
    """Cut one document into Passages of at most about `max_tokens` tokens (paragraphs, split if longer).

    count_tokens(text) -> int, the tokenizer's count without special tokens.
    """
    passages = []
    for start, lines in _paragraphs(text):
        if count_tokens(" ".join(lines)) <= max_tokens:
            passages.append(Passage(name, start, "\n".join(lines)))
            continue
        offset = 0                                     # lines consumed so far: keeps each chunk's line number
        for chunk in _fit(lines, count_tokens, max_tokens, "\n"):
            n_lines = chunk.count("\n") + 1
            if count_tokens(chunk) <= max_tokens:
                passages.append(Passage(name, start + offset, chunk))
            else:                                      # one line longer than the budget: cut it at words
                passages.extend(Passage(name, start + offset, piece)
                                for piece in _fit(chunk.split(" "), count_tokens, max_tokens, " "))
            offset += n_lines
    return passages


# ----- the index ---------------------------------------------------------------------------------

def _model_id(encoder):
    """sha256 of the encoder's weights file when it has one (set by encoder_for), else None."""
    return getattr(encoder, "weights_sha256", None)


def encoder_for(model_folder=None):
    """The SentenceEncoder of a BERT folder (default: the installed all-MiniLM-L6-v2), tagged with its sha256."""
    from minilm.transfer import SentenceEncoder
    from minilm.transfer.run import resolve_base, weights_sha256
    folder = resolve_base(model_folder)
    encoder = SentenceEncoder.from_pretrained(folder)
    encoder.weights_sha256 = weights_sha256(folder)
    return encoder


def build_index(source, out_dir, encoder, batch_size=32, max_tokens=PASSAGE_TOKENS, progress=None):
    """Embed every passage of `source` (a folder, a text file or "pydoc") into the index folder `out_dir`.

    Returns the index's metadata (what index.json holds). The folder appears complete or not at all.
    """
    budget = min(int(max_tokens), encoder.max_length - 2)           # room for [CLS] and [SEP]
    tokenize = encoder.tokenizer.tokenize
    documents, skipped = read_documents(source)
    passages = [p for name, text in documents for p in split_passages(name, text, lambda s: len(tokenize(s)), budget)]
    embeddings = encoder.encode([p.text for p in passages], batch_size=batch_size, progress=progress)
    meta = {"format": INDEX_FORMAT, "version": 1, "source": str(source), "model_sha256": _model_id(encoder),
            "passages": len(passages), "dim": int(embeddings.shape[1]), "max_tokens": budget,
            "files": len(documents), "skipped": skipped}
    with atomic_folder(out_dir) as tmp:
        np.save(tmp / "embeddings.npy", embeddings.astype(np.float32), allow_pickle=False)
        with open(tmp / "passages.jsonl", "w", encoding="utf-8") as f:
            for p in passages:
                f.write(json.dumps({"file": p.file, "line": p.line, "text": p.text}, ensure_ascii=False) + "\n")
        (tmp / "index.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


class SearchIndex:
    """SearchIndex.load(folder, encoder): .search(query, k) -> [Hit], best first."""

    def __init__(self, embeddings, passages, meta, encoder):
        self.embeddings, self.passages, self.meta, self.encoder = embeddings, passages, meta, encoder

    @classmethod
    def load(cls, folder, encoder):
        folder = completed_folder(folder)
        meta_path = folder / "index.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"search: {folder} is not a search index (no index.json; build one with "
                                    f"`minilm index FOLDER --out {folder}`)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != INDEX_FORMAT:
            raise ValueError(f"search: {meta_path} is not a {INDEX_FORMAT} file")
        expected, actual = meta.get("model_sha256"), _model_id(encoder)
        if expected and actual and expected != actual:
            raise ValueError(f"search: {folder} was built with another model (sha256 {expected[:12]}...); "
                             f"this encoder's weights are {actual[:12]}...: rebuild the index or pass its model")
        embeddings = np.load(folder / "embeddings.npy", allow_pickle=False)
        with open(folder / "passages.jsonl", encoding="utf-8") as f:
            passages = [Passage(**json.loads(line)) for line in f]
        if embeddings.shape != (len(passages), meta["dim"]):
            raise ValueError(f"search: {folder} is inconsistent: embeddings {embeddings.shape} for "
                             f"{len(passages)} passages of dimension {meta['dim']}")
        if embeddings.shape[1] != encoder.model.config.hidden_size:
            raise ValueError(f"search: the index holds {embeddings.shape[1]}-dimensional embeddings, the "
                             f"encoder makes {encoder.model.config.hidden_size}-dimensional ones")
        return cls(embeddings, passages, meta, encoder)

    def embed_query(self, query):
        if not isinstance(query, str) or not query.strip():
            raise ValueError("search: the query is empty")
        n = len(self.encoder.tokenizer.tokenize(query)) + 2                     # + [CLS], [SEP]
        if n > self.encoder.max_length:
            raise ValueError(f"search: the query is {n} tokens long; the model reads at most "
                             f"{self.encoder.max_length} (with [CLS] and [SEP]): shorten it")
        return self.encoder.encode([query], progress=False)[0]                  # (H,)

    def search(self, query, k=5):
        """The k passages most similar to `query`, best first (ties: the earlier passage first)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"search: k must be a positive int, got {k!r}")
        scores = self.embeddings @ self.embed_query(query)                     # (N, H) @ (H,) -> (N,)
        k = min(int(k), len(scores))
        top = np.argpartition(-scores, k - 1)[:k]                               # the k best, unordered: O(N)
        top = top[np.lexsort((top, -scores[top]))]                              # by score, then position
        return [Hit(float(scores[i]), self.passages[i].file, self.passages[i].line, self.passages[i].text)
                for i in top]
