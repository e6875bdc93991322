"""Training byte-level BPE: pre-tokenization and the merge loop.

Byte-pair encoding (Sennrich, Haddow and Birch 2016, "Neural Machine Translation of
Rare Words with Subword Units"; byte-level as in GPT-2, Radford et al. 2019) starts
from the 256 possible bytes and repeatedly fuses the most frequent adjacent pair:

    repeat num_merges times:
        (a, b) = argmax over adjacent pairs of count(a, b)
        new id t = 256 + (number of merges so far);  bytes(t) = bytes(a) + bytes(b)
        replace every adjacent "a b" by "t"

Two ideas make this fast enough to train on a megabyte in seconds:

1. Word-frequency pre-count.  Text is first cut into pre-tokens with a GPT-2-like
   regular expression (words with their leading space, digit runs, punctuation runs,
   whitespace).  Merges never cross a pre-token boundary, so we only need each
   *distinct* pre-token once, with its count:  count(a, b) = sum over words w of
   freq(w) * (occurrences of "a b" in w).  One megabyte of English has ~30 K distinct
   pre-tokens instead of ~200 K occurrences.
2. Incremental pair counts.  A merge only changes the words that contain the pair,
   so we keep an index pair -> words, and after each merge subtract the old pairs of
   just those words and add their new pairs.  The best pair is found with a heap of
   (-count, a, b) entries; entries whose count has since changed are stale and are
   skipped when popped ("lazy deletion").

Ties between equally frequent pairs go to the smallest (a, b), so training is
deterministic.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from typing import Iterable

# GPT-2's pattern is  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
# The stdlib `re` has no \p{...} classes, so we spell them with \w, \d and \s:
#   letters     [^\W\d_]   = word characters that are not digits or underscore
#   digits      \d         = Unicode decimal digits
#   other       [^\s\w]|_  = anything that is not whitespace, letter or digit
# Every character falls into exactly one of whitespace / letters / digits / other,
# so the pieces always concatenate back to the input (tested).
GPT2_LIKE_SPLIT_PATTERN = (
    r"'(?:s|t|re|ve|m|ll|d)"   # English contractions: 's 't 're 've 'm 'll 'd
    r"| ?[^\W\d_]+"            # a run of letters, with at most one leading space
    r"| ?\d+"                  # a run of digits, with at most one leading space
    r"| ?(?:[^\s\w]|_)+"       # a run of punctuation / symbols, with at most one leading space
    r"|\s+(?!\S)"              # whitespace, leaving the last space for the next word
    r"|\s+"                    # whitespace at the very end of the text
)
_SPLIT_RE = re.compile(GPT2_LIKE_SPLIT_PATTERN)


def pretokenize(text: str) -> list[str]:
    """Cut ``text`` into GPT-2-like pre-tokens; "".join(pretokenize(t)) == t."""
    return _SPLIT_RE.findall(text)


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair``, left to right, by ``new_id``.

    merge_pair([1, 2, 2, 2, 3], (2, 2), 9) -> [1, 9, 2, 3]
    """
    a, b = pair
    out = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def count_words(texts: Iterable[str]) -> Counter:
    """Frequency of each distinct pre-token (as UTF-8 bytes) over all ``texts``."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(pretokenize(text))
    return Counter({word.encode("utf-8"): n for word, n in counts.items()})


def learn_merges(word_counts: dict[bytes, int], num_merges: int, min_frequency: int = 2) -> list[tuple[int, int]]:
    """The BPE merge list learned from pre-token frequencies.

    word_counts:   distinct pre-token (bytes) -> how often it occurs.
    num_merges:    how many merges to learn at most.
    min_frequency: stop early when the most frequent pair occurs fewer times than this.
    Returns merges[k] = (a, b), the pair fused into the new token id 256 + k.
    """
    if num_merges < 0:
        raise ValueError(f"learn_merges: num_merges must be >= 0, got {num_merges}")
    if min_frequency < 1:
        raise ValueError(f"learn_merges: min_frequency must be >= 1, got {min_frequency}")

    words: list[list[int]] = [list(w) for w in word_counts]   # each word as a list of token ids
    freqs: list[int] = [int(n) for n in word_counts.values()]

    # Pair statistics over all words, and which words contain each pair.
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    words_with_pair: dict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freq
            words_with_pair[pair].add(wi)

    # Max-heap by count (heapq is a min-heap, hence -count); ties -> smallest (a, b).
    heap = [(-count, a, b) for (a, b), count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    while len(merges) < num_merges:
        best = _pop_most_frequent(heap, pair_counts)
        if best is None or pair_counts[best] < min_frequency:
            break
        new_id = 256 + len(merges)
        merges.append(best)

        touched: set[tuple[int, int]] = set()
        for wi in words_with_pair.pop(best):
            old = words[wi]
            new = merge_pair(old, best, new_id)
            if len(new) == len(old):      # stale index entry: this word lost the pair earlier
                continue
            freq = freqs[wi]
            for pair in zip(old, old[1:]):            # forget the word's old pairs ...
                pair_counts[pair] -= freq
                touched.add(pair)
            for pair in zip(new, new[1:]):            # ... and count its new ones
                pair_counts[pair] += freq
                words_with_pair[pair].add(wi)
                touched.add(pair)
            words[wi] = new

        for pair in touched:                          # refresh the heap for changed counts
            count = pair_counts[pair]
            if count > 0:
                heapq.heappush(heap, (-count, pair[0], pair[1]))
            else:
                del pair_counts[pair]
    return merges


def _pop_most_frequent(heap: list, pair_counts: dict) -> tuple[int, int] | None:
    """Pop heap entries until one matches the pair's current count (lazy deletion)."""
    while heap:
        neg_count, a, b = heapq.heappop(heap)
        if pair_counts.get((a, b), 0) == -neg_count:
            return (a, b)
    return None
