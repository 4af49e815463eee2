"""In-memory inverted index of one collection, scored with BM25 from live statistics.

Postings (term → slot, term frequency) live in a compact CSR base plus a small delta of recent
additions, each posting list sorted by slot. Top-k searches are pruned (MaxScore, ``top``) and
equal exhaustive scoring. A deleted or replaced chunk only loses its slot (``alive`` is
cleared and its terms' document frequencies decremented); its postings are skipped at query
time and dropped by the next compaction, which also folds the delta into the base. Because N,
avgdl and every document frequency are kept current and idf is computed at query time, scores
after any sequence of changes equal those of an index built fresh over the same chunks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from llmops.protocols import ChunkFilter
from llmops.rag.filters import chunk_metadata
from llmops.types import Chunk, ScoredChunk

Method = Literal["lucene", "robertson", "atire"]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
# Compact when the delta outgrows the base (amortised O(log n) work per posting) or when dead
# slots make up a quarter of the index; never for tiny indexes, where it buys nothing.
MIN_COMPACT = 50_000


@dataclass(frozen=True)
class Bm25Params:
    k1: float
    b: float
    method: Method

    def idf(self, df: FloatArray, n: int) -> FloatArray:
        """Inverse document frequency, as bm25s computes it for each method."""
        if self.method == "lucene":
            return np.log1p((n - df + 0.5) / (df + 0.5))
        if self.method == "robertson":
            return np.log(np.maximum((n - df + 0.5) / (df + 0.5), 1.0))
        return np.log(n / df)  # atire

    @property
    def tf_bound(self) -> float:
        """Above every ``tf_part``: tf / (tf + norm) < 1, and atire's (k1 + 1) times that."""
        return self.k1 + 1.0 if self.method == "atire" else 1.0

    def tf_part(self, tf: FloatArray, length: FloatArray, avgdl: float) -> FloatArray:
        norm = self.k1 * (1.0 - self.b + self.b * length / avgdl)
        if self.method == "atire":
            return tf * (self.k1 + 1.0) / (tf + norm)
        return tf / (tf + norm)  # lucene and robertson (bm25s drops the constant k1 + 1)


@dataclass(frozen=True)
class EncodedChunk:
    """A chunk with its term ids (unique) and their counts, ready to be indexed."""

    chunk: Chunk
    term_ids: npt.NDArray[np.int32]
    tfs: npt.NDArray[np.int32]
    length: int


def _grown(array: npt.NDArray[Any], size: int) -> npt.NDArray[Any]:
    """``array`` with room for ``size`` entries (capacity doubles, so appends stay O(1))."""
    if size <= len(array):
        return array
    bigger = np.zeros(max(size, 2 * len(array), 16), dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


class InvertedIndex:
    """One collection: vocabulary, chunks by slot, postings and BM25 statistics."""

    def __init__(self, params: Bm25Params) -> None:
        self.params = params
        self.vocab: dict[str, int] = {}
        self.slot_of: dict[str, int] = {}
        self._chunks: list[Chunk | None] = []
        self._meta: list[dict[str, Any] | None] = []
        self._terms: list[npt.NDArray[np.int32]] = []
        self._lengths = np.zeros(0, dtype=np.float64)
        self._alive = np.zeros(0, dtype=bool)
        self._df = np.zeros(0, dtype=np.float64)
        self._total_length = 0.0
        self._indptr = np.zeros(1, dtype=np.int64)
        self._slots = np.zeros(0, dtype=np.int32)
        self._tfs = np.zeros(0, dtype=np.float32)
        self._delta: dict[int, list[tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]]] = {}
        self._delta_size = 0

    @property
    def size(self) -> int:
        return len(self.slot_of)

    def chunks(self, ids: Iterable[str]) -> dict[str, Chunk]:
        """The live chunks of ``ids`` by id."""
        found = {i: self._chunks[s] for i in ids if (s := self.slot_of.get(i)) is not None}
        return {i: c for i, c in found.items() if c is not None}

    def encode(
        self, chunks: Sequence[Chunk], tokens: Sequence[Sequence[str]]
    ) -> tuple[list[EncodedChunk], dict[str, int]]:
        """Term ids for each chunk and the new terms they add; changes nothing."""
        vocab, new_terms, encoded = self.vocab, dict[str, int](), []
        for chunk, words in zip(chunks, tokens, strict=True):
            counts = Counter(words)
            ids = [
                vocab[t] if t in vocab else new_terms.setdefault(t, len(vocab) + len(new_terms))
                for t in counts
            ]
            encoded.append(
                EncodedChunk(
                    chunk,
                    np.asarray(ids, dtype=np.int32),
                    np.fromiter(counts.values(), dtype=np.int32, count=len(counts)),
                    len(words),
                )
            )
        return encoded, new_terms

    def apply(self, new_terms: Mapping[str, int], encoded: Iterable[EncodedChunk]) -> None:
        """Add encoded chunks, replacing any indexed chunk with the same id."""
        latest = {e.chunk.id: e for e in encoded}  # an id repeated in one batch: the last wins
        self.remove(latest)
        self.vocab.update(new_terms)
        self._add_postings(*self._append(list(latest.values())))
        self._maybe_compact()

    def restore(self, vocab: Mapping[str, int], encoded: Sequence[EncodedChunk]) -> None:
        """Fill an empty index from persisted chunks, straight into the compact base."""
        self.vocab = dict(vocab)
        self._set_base(*self._append(encoded))

    def _append(self, items: Sequence[EncodedChunk]) -> tuple[IntArray, IntArray, FloatArray]:
        """Give each chunk a new slot and count it in the statistics; returns its postings."""
        first, count = len(self._chunks), len(items)
        for offset, item in enumerate(items):
            self.slot_of[item.chunk.id] = first + offset
        self._chunks.extend(e.chunk for e in items)
        self._meta.extend(chunk_metadata(e.chunk) for e in items)
        self._terms.extend(e.term_ids for e in items)
        lengths = np.array([e.length for e in items], dtype=np.float64)
        self._lengths = _grown(self._lengths, first + count)
        self._alive = _grown(self._alive, first + count)
        self._lengths[first : first + count], self._alive[first : first + count] = lengths, True
        self._total_length += float(lengths.sum())
        terms = np.concatenate([np.zeros(0, np.int64), *(e.term_ids for e in items)])
        tfs = np.concatenate([np.zeros(0, np.float64), *(e.tfs for e in items)])
        slots = np.repeat(np.arange(first, first + count), [len(e.term_ids) for e in items])
        self._df = _grown(self._df, len(self.vocab))
        self._df += np.bincount(terms, minlength=len(self._df))
        return terms.astype(np.int64), slots, tfs

    def _add_postings(self, terms: IntArray, slots: IntArray, tfs: FloatArray) -> None:
        """Append one segment per term to the delta (grouped with one sort, not per posting)."""
        if not len(terms):
            return
        order = np.argsort(terms, kind="stable")  # slots come ascending: they stay sorted
        terms = terms[order]
        grouped_slots, grouped_tfs = slots[order].astype(np.int32), tfs[order].astype(np.float32)
        starts = np.flatnonzero(np.r_[True, terms[1:] != terms[:-1]])
        ends = np.r_[starts[1:], len(terms)]
        bounds = zip(terms[starts].tolist(), starts.tolist(), ends.tolist(), strict=True)
        for term, start, end in bounds:
            segment = (grouped_slots[start:end], grouped_tfs[start:end])
            self._delta.setdefault(term, []).append(segment)
        self._delta_size += len(terms)

    def remove(self, ids: Iterable[str]) -> None:
        for chunk_id in ids:
            slot = self.slot_of.pop(chunk_id, None)
            if slot is None:
                continue
            self._alive[slot] = False
            self._total_length -= self._lengths[slot]
            self._df[self._terms[slot]] -= 1
            self._chunks[slot] = self._meta[slot] = None

    def _maybe_compact(self) -> None:
        dead = len(self._chunks) - self.size
        if self._delta_size > max(len(self._slots), MIN_COMPACT) or (
            dead > MIN_COMPACT // 10 and dead * 4 > len(self._chunks)
        ):
            self.compact()

    def compact(self) -> None:
        """Rebuild the CSR base from live postings only, renumbering slots densely."""
        terms, slots, tfs = self._all_postings()
        alive = self._alive[: len(self._chunks)]
        keep = alive[slots]
        new_slot = np.cumsum(alive) - 1
        live = np.flatnonzero(alive)
        self._chunks = [self._chunks[i] for i in live]
        self._meta = [self._meta[i] for i in live]
        self._terms = [self._terms[i] for i in live]
        self._lengths, self._alive = self._lengths[live], np.ones(len(live), dtype=bool)
        self.slot_of = {c.id: i for i, c in enumerate(self._chunks) if c is not None}
        self._set_base(terms[keep], new_slot[slots[keep]], tfs[keep])

    def _set_base(self, terms: IntArray, slots: IntArray, tfs: FloatArray) -> None:
        """Replace the postings by these (term, slot, tf) triples, grouped by term (CSR)."""
        order = np.lexsort((slots, terms))  # by term, then slot (``top`` binary-searches)
        counts = np.bincount(terms, minlength=len(self.vocab))
        self._indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        self._slots, self._tfs = slots[order].astype(np.int32), tfs[order].astype(np.float32)
        self._delta, self._delta_size = {}, 0

    def _all_postings(self) -> tuple[IntArray, IntArray, FloatArray]:
        base_terms = np.repeat(np.arange(len(self._indptr) - 1), np.diff(self._indptr))
        segments = [(t, s, f) for t, parts in self._delta.items() for s, f in parts]
        return (
            np.concatenate([base_terms, *(np.full(len(s), t) for t, s, _ in segments)]),
            np.concatenate([self._slots, *(s for _, s, _ in segments)]).astype(np.int64),
            np.concatenate([self._tfs, *(f for _, _, f in segments)]).astype(np.float64),
        )

    def _postings(self, term: int) -> list[tuple[npt.NDArray[Any], npt.NDArray[Any]]]:
        """The term's posting parts (slots, tfs): delta segments and the base, each sorted by
        slot."""
        parts = list(self._delta.get(term, ()))
        if term < len(self._indptr) - 1:
            start, end = self._indptr[term], self._indptr[term + 1]
            parts.append((self._slots[start:end], self._tfs[start:end]))
        return parts

    def _query_terms(self, words: Sequence[str]) -> tuple[IntArray, FloatArray]:
        """The query's known terms and their weights (idf × count in the query), highest
        possible contribution first. A term repeated in the query counts once per occurrence,
        as in bm25s and Lucene; a known term whose chunks were all deleted has df 0 and is
        skipped (atire's idf would be infinite)."""
        counts = Counter(t for w in words if (t := self.vocab.get(w)) is not None and self._df[t])
        terms = np.fromiter(counts, dtype=np.int64, count=len(counts))
        weights = self.params.idf(self._df[terms], self.size)
        weights *= np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        order = np.argsort(-weights, kind="stable")
        return terms[order], weights[order]

    def _contributions(self, term: int, weight: float) -> tuple[IntArray, FloatArray]:
        """Slots of the term's live postings and the term's share of their BM25 scores."""
        parts = self._postings(term)
        slots = np.concatenate([s for s, _ in parts]).astype(np.int64)
        tfs = np.concatenate([f for _, f in parts]).astype(np.float64)
        live = self._alive[slots]
        slots, tfs = slots[live], tfs[live]
        avgdl = self._total_length / self.size
        return slots, weight * self.params.tf_part(tfs, self._lengths[slots], avgdl)

    def _looked_up(self, term: int, weight: float, slots: IntArray) -> FloatArray:
        """The term's share of the scores of ``slots`` (0 where it does not occur), found by
        binary search in its slot-sorted posting parts rather than by reading them all."""
        tfs = np.zeros(len(slots), dtype=np.float64)
        for part_slots, part_tfs in self._postings(term):
            if not len(part_slots):
                continue
            at = np.minimum(np.searchsorted(part_slots, slots), len(part_slots) - 1)
            found = part_slots[at] == slots
            tfs[found] = part_tfs[at[found]]
        avgdl = self._total_length / self.size
        part = self.params.tf_part(tfs, self._lengths[slots], avgdl)
        return np.where(tfs > 0, weight * part, 0.0)

    def scores(self, words: Sequence[str]) -> tuple[IntArray, FloatArray]:
        """Slots of the live chunks sharing a term with the query, and their BM25 scores."""
        terms, weights = self._query_terms(words)
        total = np.zeros(len(self._chunks), dtype=np.float64)
        hit = np.zeros(len(self._chunks), dtype=bool)
        for term, weight in zip(terms.tolist(), weights.tolist(), strict=True):
            slots, contribution = self._contributions(term, weight)
            total[slots] += contribution  # a chunk has one posting per term: no repeats
            hit[slots] = True
        matched = np.flatnonzero(hit).astype(np.int64)
        return matched, total[matched]

    def top(self, words: Sequence[str], k: int) -> tuple[IntArray, FloatArray]:
        """The ``k`` best live chunks (slots, scores), best first: exactly ``scores``' best,
        without reading the long posting lists of common terms when they cannot matter.

        MaxScore pruning: terms are read whole from the rarest (highest possible
        contribution) down, until the k-th best partial score exceeds what all the remaining
        terms together could add (their idf × the largest tf part). A chunk holding none of
        the terms read cannot reach the top k then, so each remaining term only has to score
        the chunks already found: by binary search in its posting lists when that touches
        fewer postings than reading the list.
        """
        terms, weights = self._query_terms(words)
        bounds = weights * self.params.tf_bound
        left = np.cumsum(bounds[::-1])[::-1]  # left[i]: the most terms i.. can add
        total = np.zeros(len(self._chunks), dtype=np.float64)
        seen = np.zeros(len(self._chunks), dtype=bool)
        found: list[IntArray] = [np.zeros(0, np.int64)]
        read = 0
        while read < len(terms):
            slots, contribution = self._contributions(int(terms[read]), float(weights[read]))
            total[slots] += contribution  # a chunk has one posting per term: no repeats
            found.append(slots[~seen[slots]])
            seen[slots] = True
            read += 1
            if read < len(terms) and _kth(total, found, k) > left[read]:
                break
        candidates = np.concatenate(found)
        for term, weight in zip(terms[read:].tolist(), weights[read:].tolist(), strict=True):
            postings = sum(len(s) for s, _ in self._postings(term))
            if len(candidates) * np.log2(postings + 2) < postings:
                total[candidates] += self._looked_up(term, weight, candidates)
            else:  # reading the list is cheaper; chunks outside the candidates are ignored
                slots, contribution = self._contributions(term, weight)
                total[slots] += contribution
        scores = total[candidates]
        best = _best_first(scores, candidates, k)
        return candidates[best], scores[best]

    def search(
        self, words: Sequence[str], top_k: int, where: ChunkFilter | None
    ) -> list[ScoredChunk]:
        """The ``top_k`` best live chunks accepted by ``where``, best first.

        Without a filter, ``top``. With one, candidates are taken best first in growing
        rounds (partial sorts), so the filter is only evaluated on as many of them as it takes
        to fill ``top_k``.
        """
        if where is None:
            return self._accepted(*self.top(words, top_k), top_k, None)
        slots, scores = self.scores(words)
        remaining = np.arange(len(slots))
        hits: list[ScoredChunk] = []
        need = 8 * top_k
        while len(remaining) and len(hits) < top_k:
            if need < len(remaining):
                part = np.argpartition(-scores[remaining], need - 1)
                picked, remaining = remaining[part[:need]], remaining[part[need:]]
            else:
                picked, remaining = remaining, remaining[:0]
            picked = picked[np.argsort(-scores[picked], kind="stable")]
            hits += self._accepted(slots[picked], scores[picked], top_k - len(hits), where)
            need *= 4
        return hits

    def _accepted(
        self, slots: IntArray, scores: FloatArray, limit: int, where: ChunkFilter | None
    ) -> list[ScoredChunk]:
        hits: list[ScoredChunk] = []
        for slot, score in zip(slots.tolist(), scores.tolist(), strict=True):
            meta, chunk = self._meta[slot], self._chunks[slot]
            if chunk is None or meta is None or (where is not None and not where(meta)):
                continue
            hits.append(ScoredChunk(chunk, score))
            if len(hits) == limit:
                break
        return hits


def _kth(total: FloatArray, found: Sequence[IntArray], k: int) -> float:
    """The k-th best score so far among the chunks found (each found once; -inf while fewer
    than k)."""
    scores = total[np.concatenate(found)]
    if len(scores) < k:
        return -np.inf
    return float(np.partition(scores, len(scores) - k)[len(scores) - k])


def _best_first(scores: FloatArray, slots: IntArray, k: int) -> IntArray:
    """Positions of the ``k`` highest scores, highest first; equal scores in slot order (the
    chunk indexed first first), so tied chunks always come back in one order."""
    if k < len(scores):
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        picked = np.flatnonzero(scores >= kth)
    else:
        picked = np.arange(len(scores))
    return picked[np.lexsort((slots[picked], -scores[picked]))][:k]
