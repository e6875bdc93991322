"""WordNet 3.0 glosses from Debian's ``wordnet-base`` package: definitions and example sentences.

Each synset (a set of synonyms with one meaning) is one line of
``/usr/share/wordnet/data.{noun,verb,adj,adv}`` (see wndb(5WN))::

    00002724 29 v 01 choke 0 002 @ 00001740 v 0000 ... | breathe with great difficulty, ...; "She choked with emotion ..."
    offset   lex ss w_cnt word lex_id  pointers ...       gloss: definition; "example"; "example"

* ``offset``: the byte offset of the line in its file, the synset's id within its part of speech;
* ``lex``: the lexicographer file number 0-44, a coarse semantic class (``LEXNAMES``);
* ``ss``: n (noun), v (verb), a (adjective), s (adjective satellite), r (adverb);
* ``w_cnt``: the number of words, in hexadecimal, each followed by a hex ``lex_id``;
* the gloss follows `` | ``: a definition, then ``; "example"`` parts.

Lines that start with two spaces are the license header.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Collection, Iterator, NamedTuple

from minilm.data.errors import CorpusNotInstalledError

__all__ = ["Synset", "LEXNAMES", "WORDNET_DIR", "read_synsets", "wordnet_text"]

WORDNET_DIR = Path("/usr/share/wordnet")
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")

# lexnames(5WN) for WordNet 3.0: lexicographer file number -> name.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()

_EXAMPLE = re.compile(r'"([^"]*)"')
_HYPERNYM_POINTERS = ("@", "@i")  # hypernym, instance hypernym (wninput(5WN))
_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # syntactic markers on adjectives: big(a), galore(ip)


class Synset(NamedTuple):
    """One WordNet meaning."""

    pos: str  # ss_type: n, v, a, s or r
    offset: int  # with ``pos``, the synset's id
    lex_filenum: int
    words: tuple[str, ...]  # underscores turned into spaces, adjective markers removed
    definition: str
    examples: tuple[str, ...]
    hypernyms: tuple[int, ...] = ()  # offsets of the synsets this one "is a" (pointers "@" and "@i")

    @property
    def lexname(self) -> str:
        """The lexicographer class, e.g. ``noun.animal``."""
        return LEXNAMES[self.lex_filenum]


def _parse_line(line: str, where: str) -> Synset:
    fields_part, bar, gloss = line.partition(" | ")
    fields = fields_part.split()
    try:
        offset, lex, pos, n_words = int(fields[0]), int(fields[1]), fields[2], int(fields[3], 16)
        raw_words = fields[4 : 4 + 2 * n_words : 2]
        # then p_cnt and p_cnt pointers of four fields: symbol, target offset, target pos, source/target
        p_cnt = int(fields[4 + 2 * n_words])
        pointers = fields[5 + 2 * n_words : 5 + 2 * n_words + 4 * p_cnt]
        hypernyms = tuple(int(pointers[i + 1]) for i in range(0, len(pointers), 4)
                          if pointers[i] in _HYPERNYM_POINTERS and pointers[i + 2] == pos)
    except (IndexError, ValueError):
        raise ValueError(f"wordnet: {where}: cannot parse the synset line {line[:80]!r}") from None
    if len(raw_words) != n_words or not 0 <= lex < len(LEXNAMES):
        raise ValueError(f"wordnet: {where}: malformed synset line {line[:80]!r}")
    words = tuple((_ADJ_MARKER.sub("", w) if w.endswith(")") else w).replace("_", " ") for w in raw_words)
    gloss = gloss.strip()
    definition, sep, rest = gloss.partition('; "')
    examples = tuple(e.strip() for e in _EXAMPLE.findall(sep[-1:] + rest)) if sep else ()
    return Synset(pos, offset, lex, words, definition.strip(), tuple(e for e in examples if e), hypernyms)


def read_synsets(parts: Collection[str] = PARTS_OF_SPEECH, root: str | Path = WORDNET_DIR) -> Iterator[Synset]:
    """Yield every synset of the given parts of speech (files in the order given, lines in file order)."""
    root = Path(root)
    for part in parts:
        if part not in PARTS_OF_SPEECH:
            raise ValueError(f"wordnet: unknown part of speech {part!r}; choose from {PARTS_OF_SPEECH}")
        path = root / f"data.{part}"
        if not path.is_file():
            raise CorpusNotInstalledError("wordnet", "wordnet-base", path)
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.startswith("  ") or not line.strip():
                    continue  # license header
                yield _parse_line(line, f"{path}:{number}")


def wordnet_text(
    *,
    include_examples: bool = True,
    exclude: Collection[tuple[str, int]] = (),
    parts: Collection[str] = PARTS_OF_SPEECH,
    root: str | Path = WORDNET_DIR,
) -> str:
    """All glosses as text, one sentence per line: each definition, then its examples.

    ``exclude`` holds (pos, offset) pairs to leave out, e.g. the synsets of an
    evaluation set, so that they never appear in pretraining text.
    """
    excluded = set(exclude)
    lines = []
    for s in read_synsets(parts, root):
        if (s.pos, s.offset) in excluded:
            continue
        lines.append(s.definition)
        if include_examples:
            lines.extend(s.examples)
    return "\n".join(lines) + "\n"
