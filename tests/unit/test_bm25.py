"""Bm25Index: scores by hand and against bm25s, incremental == fresh, persistence, filters."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import pytest
import Stemmer
from pydantic import ValidationError

from llmops.errors import StorageError
from llmops.rag.sparse import postings
from llmops.rag.sparse.bm25 import Bm25Index
from llmops.types import Chunk

WORDS = (
    "run running runs ran cat cats dog dogs paint painted painting colour colours widget "
    "widgets backup backups restore restoring server servers price prices invoice invoices "
    "archive archived catalogue nightly teal serial number numbers install installed"
).split()
STOP = "the and of a to in is it".split()


def _index(tmp_path: Path, **settings: object) -> Iterator[Bm25Index]:
    index = Bm25Index(Bm25Index.Config.model_validate(settings), data_dir=tmp_path, namespace="t")
    index.start()
    yield index
    index.close()


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Bm25Index]:
    """No stemming, no stop words: the tokens are the words, so scores can be done by hand."""
    yield from _index(tmp_path, stemmer=None, stopwords=None)


@pytest.fixture
def english(tmp_path: Path) -> Iterator[Bm25Index]:
    yield from _index(tmp_path)


def _chunk(i: int, text: str, **meta: str | int | float | bool) -> Chunk:
    return Chunk(f"c{i}", f"doc{i % 7}", text, f"src/{i % 3}.md", i, {"n": i, **meta})


def _corpus(seed: int, size: int) -> list[str]:
    rng = random.Random(seed)
    vocab = WORDS + STOP + [f"term{k}" for k in range(60)]
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]  # Zipf-like: realistic df spread
    rng.shuffle(vocab)
    return [" ".join(rng.choices(vocab, weights, k=rng.randint(3, 40))) for _ in range(size)]


def _scores(index: Bm25Index, query: str, collection: str = "col") -> dict[str, float]:
    return {h.chunk.id: h.score for h in index.search(collection, [query], 10_000)[0]}


def test_scores_match_hand_computed_bm25(plain: Bm25Index) -> None:
    texts = ["apple banana apple", "banana cherry", "cherry cherry cherry date"]
    plain.upsert("col", [_chunk(i, t) for i, t in enumerate(texts)])
    n, avgdl, k1, b = 3, (3 + 2 + 4) / 3, 1.2, 0.75

    def part(tf: int, dl: int) -> float:  # lucene: no (k1 + 1) factor, as bm25s and Lucene 8+
        return tf / (tf + k1 * (1 - b + b * dl / avgdl))

    idf_apple = math.log(1 + (n - 1 + 0.5) / (1 + 0.5))
    idf_cherry = math.log(1 + (n - 2 + 0.5) / (2 + 0.5))
    expected = {
        "c0": idf_apple * part(2, 3),
        "c1": idf_cherry * part(1, 2),
        "c2": idf_cherry * part(3, 4),
    }
    got = _scores(plain, "apple cherry")
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9)
    hits = plain.search("col", ["apple cherry"], 3)[0]
    assert [h.chunk.id for h in hits] == sorted(expected, key=lambda k: -expected[k])
    assert _scores(plain, "banana date") and not _scores(plain, "elderberry")


def test_atire_variant_by_hand(tmp_path: Path) -> None:
    for index in _index(tmp_path, stemmer=None, stopwords=None, method="atire", k1=1.5, b=0.5):
        index.upsert("col", [_chunk(0, "xx yy"), _chunk(1, "yy yy yy zz"), _chunk(2, "zz")])
        avgdl = 7 / 3
        norm = 1.5 * (1 - 0.5 + 0.5 * 4 / avgdl)
        assert _scores(index, "yy")["c1"] == pytest.approx(
            math.log(3 / 2) * 3 * 2.5 / (3 + norm), rel=1e-9
        )


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
def test_scores_equal_bm25s_on_generated_corpus(tmp_path: Path, method: str) -> None:
    texts = _corpus(seed=7, size=300)
    stemmer = Stemmer.Stemmer("english")
    reference = bm25s.BM25(k1=1.2, b=0.75, method=method)
    reference.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False))
    for index in _index(tmp_path, method=method):
        index.upsert("col", [_chunk(i, t) for i, t in enumerate(texts)])
        for query in _corpus(seed=11, size=15):
            words = bm25s.tokenize(
                [query], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
            )[0]
            expected = reference.get_scores(words)
            got = _scores(index, query)
            assert got, f"query {query!r} shares no term with the corpus"
            actual = np.array([got.get(f"c{i}", 0.0) for i in range(len(texts))])
            np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
            top = [h.score for h in index.search("col", [query], 10)[0]]
            best = np.sort(expected[expected > 0])[::-1][:10]
            np.testing.assert_allclose(top[: len(best)], best, rtol=1e-5)


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
@pytest.mark.parametrize("compact_every", [postings.MIN_COMPACT, 8])
def test_pruned_top_k_equals_the_full_ranking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, compact_every: int
) -> None:
    """``top`` (MaxScore pruning) returns exactly the best k of ``scores``, after replacements
    and deletions (delta and compacted base alike)."""
    monkeypatch.setattr(postings, "MIN_COMPACT", compact_every)
    texts = _corpus(seed=5, size=400)
    for index in _index(tmp_path, method=method):
        for start in range(0, 400, 100):
            index.upsert("col", [_chunk(i, texts[i]) for i in range(start, start + 100)])
        index.upsert("col", [_chunk(i, texts[i + 1]) for i in range(0, 60)])
        index.delete("col", [f"c{i}" for i in range(100, 150)])
        inverted = index._loaded("col")
        for query in _corpus(seed=13, size=40):
            words = index.tokenize([query])[0]
            slots, scores = inverted.scores(words)
            for k in (1, 3, 10):
                top_slots, top_scores = inverted.top(words, k)
                best = np.sort(scores)[::-1][:k]
                np.testing.assert_allclose(top_scores, best, rtol=1e-12)
                by_slot = dict(zip(slots.tolist(), scores.tolist(), strict=True))
                assert [by_slot[s] for s in top_slots.tolist()] == top_scores.tolist()


def test_common_terms_are_looked_up_not_read(
    plain: Bm25Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the rare term's chunks outscore anything the common term could add, the common
    term's long posting list is not read: it is searched for the few candidates only."""
    texts = [f"common filler{i}" for i in range(300)] + ["rare rare common"] * 3
    plain.upsert("col", [_chunk(i, t) for i, t in enumerate(texts)])
    inverted = plain._loaded("col")
    read: list[int] = []
    full_read = inverted._contributions
    monkeypatch.setattr(inverted, "_contributions", lambda t, w: read.append(t) or full_read(t, w))
    slots, scores = inverted.top(["rare", "common"], 2)
    assert read == [inverted.vocab["rare"]]
    exhaustive = inverted.scores(["rare", "common"])[1]
    np.testing.assert_allclose(scores, np.sort(exhaustive)[::-1][:2], rtol=1e-12)
    assert set(slots.tolist()) <= {300, 301, 302}


@pytest.mark.parametrize("compact_every", [postings.MIN_COMPACT, 8])
def test_incremental_changes_equal_fresh_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compact_every: int
) -> None:
    monkeypatch.setattr(postings, "MIN_COMPACT", compact_every)  # 8: compact all the time
    texts, replaced = _corpus(seed=1, size=120), _corpus(seed=2, size=120)
    final: dict[int, str] = {}
    for live in _index(tmp_path / "live"):
        for start in range(0, 100, 25):
            live.upsert("col", [_chunk(i, texts[i]) for i in range(start, start + 25)])
        final.update((i, texts[i]) for i in range(100))
        live.upsert("col", [_chunk(i, replaced[i]) for i in range(10, 30)])  # replace 20
        final.update((i, replaced[i]) for i in range(10, 30))
        gone = [f"c{i}" for i in range(40, 55)] + ["never-indexed"]
        live.delete("col", gone)
        live.delete("col", gone)  # idempotent
        for i in range(40, 55):
            final.pop(i)
        live.upsert("col", [_chunk(i, texts[i]) for i in range(100, 120)])
        live.upsert("col", [_chunk(i, texts[i]) for i in range(100, 120)])  # idempotent
        final.update((i, texts[i]) for i in range(100, 120))
        for fresh in _index(tmp_path / "fresh"):
            fresh.upsert("col", [_chunk(i, final[i]) for i in sorted(final, reverse=True)])
            assert live.ids("col") == fresh.ids("col") == {f"c{i}" for i in final}
            for query in _corpus(seed=3, size=20):
                got, want = _scores(live, query), _scores(fresh, query)
                assert got.keys() == want.keys()
                for key in want:
                    assert got[key] == pytest.approx(want[key], rel=1e-9)


def test_persists_across_close_and_a_new_instance(tmp_path: Path) -> None:
    chunks = [
        _chunk(i, t, topic="ops" if i % 2 else "docs", score=i / 4, draft=i % 3 == 0)
        for i, t in enumerate(_corpus(seed=5, size=60))
    ]
    queries = _corpus(seed=6, size=10)
    for first in _index(tmp_path):
        first.upsert("col", chunks)
        first.delete("col", ["c3", "c4"])
        first.upsert("other", chunks[:5])
        before = [first.search("col", [q], 20)[0] for q in queries]
    for again in _index(tmp_path):
        assert again.collections() == ["col", "other"]
        assert again.count("col") == 58 and again.count("other") == 5
        after = [again.search("col", [q], 20)[0] for q in queries]
        assert after == before  # same chunks (text, metadata types) and scores
        indexed = {c.id: c for c in chunks}
        assert all(h.chunk == indexed[h.chunk.id] for hits in after for h in hits)
        again.search("other", ["widget"], 5)  # held in memory now
        again.drop("other")
        assert again.collections() == ["col"] and again.count("other") == 0
        with pytest.raises(StorageError, match="no collection 'other'"):
            again.search("other", ["widget"], 5)  # not an empty index made up and kept
        with pytest.raises(StorageError, match="no collection 'other'"):
            again.chunks("other", ["c1"])


def test_changes_by_another_process_are_seen(tmp_path: Path) -> None:
    for server in _index(tmp_path):
        server.upsert("col", [_chunk(0, "widget"), _chunk(1, "paint")])
        assert [h.chunk.id for h in server.search("col", ["widget"], 5)[0]] == ["c0"]
        for cli in _index(tmp_path):  # its own connection, as `llmops ingest` would have
            cli.upsert("col", [_chunk(2, "widget paint")])
            cli.delete("col", ["c0"])
        assert [h.chunk.id for h in server.search("col", ["widget"], 5)[0]] == ["c2"]
        assert server.count("col") == 2
        for cli in _index(tmp_path):
            cli.upsert("col", [_chunk(3, "serial numbers")])  # a term new to the server
        server.upsert("col", [_chunk(4, "teal archive")])  # its own new terms: no id clash
        for fresh in _index(tmp_path):
            for query, expected in [("serial", "c3"), ("archive", "c4"), ("widget", "c2")]:
                assert [h.chunk.id for h in fresh.search("col", [query], 5)[0]] == [expected]


def test_where_applies_before_top_k(english: Bm25Index) -> None:
    english.upsert(
        "col",
        [
            _chunk(0, "widgets widgets widgets paint", team="a"),
            _chunk(1, "widget paint", team="b"),
            _chunk(2, "paint server", team="b"),
        ],
    )
    best = english.search("col", ["widget"], 1)[0]
    assert [h.chunk.id for h in best] == ["c0"]
    only_b = english.search("col", ["widget"], 1, where=lambda m: m["team"] == "b")[0]
    assert [h.chunk.id for h in only_b] == ["c1"]
    assert english.search("col", ["widget"], 5, where=lambda m: m["index"] == 2) == [[]]
    seen: list[dict[str, object]] = []
    english.search("col", ["server"], 5, where=lambda m: seen.append(dict(m)) or True)
    assert seen == [{"n": 2, "team": "b", "document_id": "doc2", "source": "src/2.md", "index": 2}]


@pytest.mark.parametrize("every", [1, 3, 40, 170])
def test_filtered_top_k_equals_filtering_the_full_ranking(english: Bm25Index, every: int) -> None:
    english.upsert("col", [_chunk(i, t) for i, t in enumerate(_corpus(seed=9, size=400))])

    def keep(meta: Mapping[str, Any]) -> bool:  # selective: several rounds of candidates
        return int(meta["n"]) % every == 0

    for query in _corpus(seed=10, size=8):
        ranking = english.search("col", [query], 400)[0]
        expected = [(h.chunk.id, h.score) for h in ranking if keep(h.chunk.metadata)][:5]
        got = english.search("col", [query], 5, where=keep)[0]
        assert [h.score for h in got] == pytest.approx([score for _, score in expected])
        assert {h.chunk.id for h in got} <= {h.chunk.id for h in ranking if keep(h.chunk.metadata)}
        assert len(got) == len(expected)


def test_stemming_stopwords_and_batches(english: Bm25Index) -> None:
    english.upsert("col", [_chunk(0, "The painted widgets"), _chunk(1, "Running the servers")])
    assert [h.chunk.id for h in english.search("col", ["painting"], 5)[0]] == ["c0"]
    assert english.search("col", ["the of and"], 5) == [[]]  # stop words only
    rows = english.search("col", ["server run", "widget", "nothing matches"], 5)
    assert [[h.chunk.id for h in row] for row in rows] == [["c1"], ["c0"], []]
    with pytest.raises(StorageError, match="no collection 'missing'"):
        english.search("missing", ["widget"], 5)


def test_readers_never_see_half_an_upsert(english: Bm25Index) -> None:
    size = 400
    english.upsert("col", [_chunk(i, f"alpha widget {i}") for i in range(size)])
    stop, counts = threading.Event(), set()

    def writer() -> None:
        for round_ in range(12):
            word = "beta" if round_ % 2 == 0 else "alpha"
            english.upsert("col", [_chunk(i, f"{word} widget {i}") for i in range(size)])
        stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not stop.is_set():
        counts.add(len(english.search("col", ["alpha"], size)[0]))
    thread.join()
    assert counts <= {0, size}, f"a search saw a partly applied upsert: {sorted(counts)}"


def test_config_rejects_unknown_language_and_stopwords() -> None:
    with pytest.raises(ValidationError, match=r"allowed: .*english"):
        Bm25Index.Config(stemmer="klingon")
    with pytest.raises(ValidationError):
        Bm25Index.Config.model_validate({"stopwords": "xx"})
    assert Bm25Index.Config(stopwords=["foo"], stemmer=None).stopwords == ["foo"]
