"""Loading and chunking on a producer thread while the consumer embeds: order, bounds, errors,
early exit; and the ingest pipeline that uses it (commits in order, resumable after a failure)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops import RAG
from llmops.pipelines import ingest
from llmops.pipelines.discovery import discover_files
from llmops.pipelines.prefetch import prefetched
from tests.conftest import HASHING, ConfigWriter, write_corpus


def test_items_arrive_in_order_while_the_next_is_produced() -> None:
    second_started = threading.Event()

    def items() -> Iterator[int]:
        yield 0
        second_started.set()
        yield 1
        yield 2

    seen = []
    with prefetched(items()) as stream:
        for item in stream:
            if item == 0:  # the producer works on the next item while we hold this one
                assert second_started.wait(timeout=5)
            seen.append(item)
    assert seen == [0, 1, 2]


def test_the_producer_runs_at_most_depth_plus_one_ahead() -> None:
    produced = itertools.count()

    def endless() -> Iterator[int]:
        while True:
            yield next(produced)

    with prefetched(endless(), depth=1) as stream:
        assert next(stream) == 0
        time.sleep(0.3)
        # 0 consumed, 1 queued, 2 produced and waiting for room; the counter reads the next
        assert next(produced) <= 3


def test_an_error_arrives_after_the_items_before_it() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("bad file")

    seen = []
    with pytest.raises(ValueError, match="bad file"), prefetched(failing()) as stream:
        for item in stream:
            seen.append(item)
    assert seen == [1, 2]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_leaving_early_stops_the_producer(stop: type[BaseException]) -> None:
    produced = itertools.count()
    threads_before = set(threading.enumerate())

    def endless() -> Iterator[int]:
        while True:
            time.sleep(0.01)
            yield next(produced)

    with pytest.raises(stop), prefetched(endless()) as stream:
        next(stream)
        raise stop()
    time.sleep(0.3)
    count = next(produced)
    time.sleep(0.2)
    assert next(produced) == count + 1  # nothing produced meanwhile
    assert not [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]


def test_ingest_failure_keeps_earlier_batches_and_resumes(
    write_config: ConfigWriter, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = {
        f"page{i:02d}.md": f"# Page {i}\n\nPage {i} talks about topic {i}.\n" for i in range(9)
    }
    write_corpus(corpus, pages)
    monkeypatch.setattr(ingest, "BATCH_CHUNKS", 2)  # several batches
    original = ingest.Ingestion._chunk_files

    def chunk_or_fail(self: ingest.Ingestion, f: ingest.SourceFile) -> object:
        if f.key.endswith("page06.md"):
            raise RuntimeError("chunker crashed")
        return original(self, f)

    with RAG.from_config(write_config(embedder=HASHING)) as rag:
        monkeypatch.setattr(ingest.Ingestion, "_chunk_files", chunk_or_fail)
        with pytest.raises(RuntimeError, match="chunker crashed"):
            rag.ingest()
        building = rag.components.records.building()
        assert building is not None
        committed = set(rag.components.records.files(building.collection))
        assert committed and "docs/page06.md" not in committed
        keys = [f.key for f in discover_files(rag.components.sources)]
        before = keys[: keys.index("docs/page06.md")]
        # every batch before the failing one is committed, in order; the failing batch's
        # files (at most one here: two chunks make a batch) are not
        assert committed == set(before[: len(committed)]) and len(committed) >= len(before) - 1
        monkeypatch.setattr(ingest.Ingestion, "_chunk_files", original)
        report = rag.ingest()
    assert report.added == len(keys) - len(committed) and report.unchanged == len(committed)
    assert report.rebuilt and report.skipped == {}
