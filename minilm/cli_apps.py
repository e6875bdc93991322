"""The `minilm` commands of the applications: semantic search over a folder of text.

    minilm index notes/ --out notes.index            embed every paragraph once (progress on stderr)
    minilm index pydoc --out pydoc.index             or Python's own help topics
    minilm search notes.index "how do I sort a list by a key" [--top 5]

The encoder is the installed all-MiniLM-L6-v2 wheel unless --model names a BERT folder; `search`
uses the same --model as `index` did (the index remembers its sha256 and refuses another).
Errors are reported by minilm.cli.main (one line, exit code 2).
"""
import sys
from pathlib import Path

from minilm.cli_transfer import _positive


def add_parsers(sub):
    i = sub.add_parser("index", help="embed the paragraphs of a folder of text files (or 'pydoc') for `minilm search`")
    i.add_argument("source", help="a folder (read recursively), a text file, or 'pydoc' (Python's help topics)")
    i.add_argument("--out", required=True, help="index folder to write: embeddings.npy, passages.jsonl, index.json")
    i.add_argument("--model", default=None, help="a BERT folder (default: the installed all-MiniLM-L6-v2 wheel)")
    i.add_argument("--batch-size", type=_positive(int), default=32, help="passages per batch (default: 32)")
    i.add_argument("--overwrite", action="store_true", help="replace an existing index folder")
    s = sub.add_parser("search", help="the passages of an index closest in meaning to a query")
    s.add_argument("index", help="index folder written by `minilm index`")
    s.add_argument("query", help="what to look for, in your own words")
    s.add_argument("--top", type=_positive(int), default=5, help="passages to show (default: 5)")
    s.add_argument("--model", default=None, help="the BERT folder the index was built with (default: the wheel's)")


def cmd_index(args):
    from minilm.apps.search import build_index, encoder_for
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise ValueError(f"--out {out} already holds files; choose another folder or add --overwrite")
    encoder = encoder_for(args.model)
    meta = build_index(args.source, out, encoder, batch_size=args.batch_size, progress=sys.stderr.isatty() or None)
    for name in meta["skipped"]:
        print(f"skipped (binary or not UTF-8): {name}", file=sys.stderr)
    print(f"{meta['passages']} passages from {meta['files']} files -> {out}")
    return 0


def _snippet(text, width=160):
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 3] + "..."


def cmd_search(args):
    from minilm.apps.search import SearchIndex, encoder_for
    index = SearchIndex.load(args.index, encoder_for(args.model))
    for rank, hit in enumerate(index.search(args.query, args.top), start=1):
        print(f"{rank}. {hit.score:.3f}  {hit.file}:{hit.line}\n   {_snippet(hit.text)}")
    return 0


HANDLERS = {"index": cmd_index, "search": cmd_search}
