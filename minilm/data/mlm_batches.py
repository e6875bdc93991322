"""Batches for masked language modelling (BERT-style): sentences -> [CLS] ... [SEP] -> padded, masked batches.

Each example is a *unit*, built once when the batcher is made:

* ``pack=False``: one sentence per unit, ``[CLS] s [SEP]``, the sentence cut to
  ``max_len - 2`` tokens.
* ``pack=True``: consecutive sentences share a unit, ``[CLS] s1 [SEP] s2 [SEP] s3 [SEP]``,
  filled greedily in corpus order while the unit stays within ``max_len``
  (a sentence that does not fit starts the next unit). Short sentences then no
  longer pay for a row of padding each; this is RoBERTa's "FULL-SENTENCES"
  input (Liu et al. 2019, section 4.2) without crossing document boundaries
  (we do not know them). All ``token_type_ids`` are 0: there is no
  next-sentence-prediction task, and packed sentences attend to each other.

Batches: the units are visited in a fresh random order every epoch; a batch is
the next ``batch_size`` units (running on into the next epoch when one ends),
padded with [PAD] to the longest unit in the batch, then corrupted by
``mask_tokens`` with [CLS], [SEP] and [PAD] never chosen. Empty sentences are
dropped (``num_dropped_empty`` counts them).
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from minilm.data.mlm_masking import default_random_token_ids, mask_tokens

__all__ = ["MLMBatcher"]


class MLMBatcher:
    """Masked-LM batches: dicts of int64 (B, T) arrays ``input_ids``, ``attention_mask``, ``token_type_ids``, ``labels``.

    ``sentences`` are lists of token ids *without* special tokens; ``rng`` drives
    the epoch order and the masking, and ``state_dict()`` captures it for an exact resume.
    ``special_ids`` names further ids never to choose or draw (e.g. [UNK]).
    """

    def __init__(
        self,
        sentences: Sequence[Sequence[int]],
        batch_size: int,
        max_len: int,
        rng: np.random.Generator,
        cls_id: int,
        sep_id: int,
        pad_id: int,
        mask_id: int,
        vocab_size: int,
        *,
        pack: bool = False,
        mask_prob: float = 0.15,
        special_ids: Iterable[int] = (),
        ignore_index: int = -100,
    ):
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"MLMBatcher: rng must be a numpy.random.Generator, got {type(rng).__name__}")
        if batch_size < 1:
            raise ValueError(f"MLMBatcher: batch_size must be >= 1, got {batch_size}")
        if max_len < 3:
            raise ValueError(f"MLMBatcher: max_len must be >= 3 ([CLS], a token, [SEP]), got {max_len}")
        self.specials = sorted({int(cls_id), int(sep_id), int(pad_id), int(mask_id), *map(int, special_ids)})
        if self.specials[0] < 0 or self.specials[-1] >= vocab_size:
            raise ValueError(f"MLMBatcher: special ids {self.specials} must lie in [0, vocab_size={vocab_size})")
        self.batch_size, self.max_len, self.pack = int(batch_size), int(max_len), bool(pack)
        self.cls_id, self.sep_id, self.pad_id, self.mask_id = int(cls_id), int(sep_id), int(pad_id), int(mask_id)
        self.vocab_size, self.mask_prob, self.ignore_index = int(vocab_size), float(mask_prob), int(ignore_index)
        self.rng = rng
        self.random_token_ids = default_random_token_ids(self.vocab_size, self.specials, self.mask_id)

        clean = self._check_sentences(sentences)
        self.num_dropped_empty = len(sentences) - len(clean)
        if not clean:
            raise ValueError(f"MLMBatcher: no non-empty sentences (got {len(sentences)} sentences, all empty)")
        self.units = self._pack(clean) if self.pack else [self._wrap([s[: self.max_len - 2]]) for s in clean]

        self._epoch = -1
        self._epoch_seed: int | None = None
        self._order = np.zeros(0, dtype=np.int64)
        self._position = 0

    # ------------------------------------------------------------------ building units

    def _check_sentences(self, sentences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Non-empty sentences as int64 arrays; every id in range and none special (checked in one pass)."""
        arrays = [np.asarray(s) for s in sentences]
        for i, arr in enumerate(arrays):
            if arr.ndim != 1:
                raise ValueError(f"MLMBatcher: sentence {i} must be a flat list of ids, got shape {arr.shape}")
            if arr.size and arr.dtype.kind not in "iu":
                raise TypeError(f"MLMBatcher: sentence {i} must hold integer ids, got dtype {arr.dtype}")
        clean = [a.astype(np.int64) for a in arrays if a.size]
        if not clean:
            return clean
        flat = np.concatenate(clean)  # (N,)
        ends = np.cumsum([a.size for a in clean])  # (S,) where each sentence ends in ``flat``
        nonempty = [i for i, a in enumerate(arrays) if a.size]  # index among the sentences passed in

        def where(pos: int) -> str:
            k = int(np.searchsorted(ends, pos, side="right"))
            return f"sentence {nonempty[k]} (position {pos - (ends[k - 1] if k else 0)})"

        bad = np.flatnonzero((flat < 0) | (flat >= self.vocab_size))
        if bad.size:
            raise ValueError(f"MLMBatcher: {where(bad[0])} has the id {flat[bad[0]]}, outside [0, {self.vocab_size})")
        hit = np.flatnonzero(np.isin(flat, self.specials))
        if hit.size:
            raise ValueError(
                f"MLMBatcher: {where(hit[0])} holds the special id {flat[hit[0]]}; "
                "pass sentences tokenized without special tokens"
            )
        return clean

    def _wrap(self, parts: list[np.ndarray]) -> np.ndarray:
        """[CLS] p1 [SEP] p2 [SEP] ... as one int64 array."""
        pieces = [np.array([self.cls_id])]
        for p in parts:
            pieces += [p, np.array([self.sep_id])]
        return np.concatenate(pieces).astype(np.int64)

    def _pack(self, sentences: list[np.ndarray]) -> list[np.ndarray]:
        units, current, length = [], [], 1  # length counts [CLS]
        for s in sentences:
            s = s[: self.max_len - 2]
            if current and length + s.size + 1 > self.max_len:
                units.append(self._wrap(current))
                current, length = [], 1
            current.append(s)
            length += s.size + 1
        units.append(self._wrap(current))
        return units

    # ------------------------------------------------------------------ batches

    def _collate(self, units: list[np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        T = max(u.size for u in units)
        input_ids = np.full((len(units), T), self.pad_id, dtype=np.int64)  # (B, T)
        attention_mask = np.zeros((len(units), T), dtype=np.int64)  # (B, T)
        for row, u in enumerate(units):
            input_ids[row, : u.size] = u
            attention_mask[row, : u.size] = 1
        inputs, labels = mask_tokens(
            input_ids,
            rng,
            mask_token_id=self.mask_id,
            vocab_size=self.vocab_size,
            special_ids=self.specials,
            mask_prob=self.mask_prob,
            random_token_ids=self.random_token_ids,
            ignore_index=self.ignore_index,
        )
        return {
            "input_ids": inputs,
            "attention_mask": attention_mask,
            "token_type_ids": np.zeros_like(input_ids),
            "labels": labels,
        }

    def _start_epoch(self) -> None:
        self._epoch += 1
        self._epoch_seed = int(self.rng.integers(0, 2**63))
        self._order = np.random.default_rng(self._epoch_seed).permutation(len(self.units))
        self._position = 0

    def next_batch(self) -> dict[str, np.ndarray]:
        picked = []
        while len(picked) < self.batch_size:
            if self._position >= self._order.size:
                self._start_epoch()
            take = self._order[self._position : self._position + self.batch_size - len(picked)]
            picked.extend(int(i) for i in take)
            self._position += take.size
        return self._collate([self.units[i] for i in picked], self.rng)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while True:
            yield self.next_batch()

    def iter_eval_batches(self, seed: int = 0, max_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Every unit once, in corpus order, masked by a fresh Generator(seed): the same batches on every call.

        Does not touch the training ``rng``. The last batch may be smaller.
        """
        rng = np.random.default_rng(seed)
        for i, first in enumerate(range(0, len(self.units), self.batch_size)):
            if max_batches is not None and i >= max_batches:
                return
            yield self._collate(self.units[first : first + self.batch_size], rng)

    @property
    def epoch(self) -> int:
        """Completed-or-current epoch index (-1 before the first batch)."""
        return self._epoch

    # ------------------------------------------------------------------ resume

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able dict: RNG state, epoch, the seed of this epoch's order, position in it."""
        return {
            "rng": self.rng.bit_generator.state,
            "epoch": self._epoch,
            "epoch_seed": self._epoch_seed,
            "position": self._position,
            "num_units": len(self.units),
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where ``state_dict()`` was taken (restores the Generator in place)."""
        for key, mine in (("num_units", len(self.units)), ("batch_size", self.batch_size)):
            if state.get(key) != mine:
                raise ValueError(
                    f"MLMBatcher.load_state_dict: saved {key}={state.get(key)} but this batcher has {key}={mine} "
                    "(different sentences, max_len, pack or batch_size); the batches would not continue the saved run"
                )
        kind = type(self.rng.bit_generator).__name__
        if state["rng"].get("bit_generator") != kind:
            raise ValueError(f"MLMBatcher.load_state_dict: saved a {state['rng'].get('bit_generator')} state, but rng is {kind}")
        self.rng.bit_generator.state = state["rng"]
        self._epoch, self._epoch_seed, self._position = int(state["epoch"]), state["epoch_seed"], int(state["position"])
        if self._epoch_seed is None:
            self._order = np.zeros(0, dtype=np.int64)
        else:
            self._order = np.random.default_rng(self._epoch_seed).permutation(len(self.units))
