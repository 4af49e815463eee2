"""Loading and chunking on a producer thread while the consumer embeds, and writing behind it:
order, bounds, errors, early exit; and the ingest pipeline that uses both (commits in order,
resumable after a failure in either thread)."""

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
from llmops.pipelines.prefetch import prefetched, write_behind
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
    original = ingest.Ingestion._prepare

    def chunk_or_fail(self: ingest.Ingestion, f: ingest.SourceFile) -> object:
        if f.key.endswith("page06.md"):
            raise RuntimeError("chunker crashed")
        return original(self, f)

    with RAG.from_config(write_config(embedder=HASHING)) as rag:
        monkeypatch.setattr(ingest.Ingestion, "_prepare", chunk_or_fail)
        with pytest.raises(RuntimeError, match="chunker crashed"):
            rag.ingest()
        building = rag.components.records.building()
        assert building is not None
        committed = set(rag.components.records.files(building.collection))
        assert committed and "docs/page06.md" not in committed
        keys = [f.key for f in discover_files(rag.components.sources).files]
        before = keys[: keys.index("docs/page06.md")]
        # every batch before the failing one is committed, in order; the failing batch's
        # files (at most one here: two chunks make a batch) are not
        assert committed == set(before[: len(committed)]) and len(committed) >= len(before) - 1
        monkeypatch.setattr(ingest.Ingestion, "_prepare", original)
        report = rag.ingest()
    assert report.added == len(keys) - len(committed) and report.unchanged == len(committed)
    assert report.rebuilt and report.skipped == {}


def test_writes_run_in_order_one_at_a_time_behind_the_caller() -> None:
    log: list[str] = []
    first_running = threading.Event()
    release = threading.Event()

    def work(name: str, wait: bool = False) -> None:
        first_running.set()
        if wait:
            assert release.wait(5)
        log.append(name)

    with write_behind() as submit:
        submit(lambda: work("a", wait=True))
        assert first_running.wait(5)
        log.append("caller works meanwhile")
        release.set()
        submit(lambda: work("b"))  # waits for "a" first
        submit(lambda: work("c"))
    assert log == ["caller works meanwhile", "a", "b", "c"]  # the block waited for "c"


def test_a_failed_write_surfaces_at_the_next_submit_or_at_exit() -> None:
    def fail() -> None:
        raise OSError("disk full")

    ran = []
    with pytest.raises(OSError, match="disk full"), write_behind() as submit:
        submit(fail)
        submit(lambda: ran.append(1))
    assert ran == []  # nothing runs after a failed write
    with pytest.raises(OSError, match="disk full"), write_behind() as submit:
        submit(fail)


def test_ingest_write_failure_keeps_earlier_batches_and_resumes(
    write_config: ConfigWriter, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_corpus(corpus, {f"page{i:02d}.md": f"# Page {i}\n\nTopic {i}.\n" for i in range(9)})
    monkeypatch.setattr(ingest, "BATCH_CHUNKS", 2)
    with RAG.from_config(write_config(embedder=HASHING)) as rag:
        store = rag.components.store
        original, calls = store.upsert, itertools.count()

        def upsert_or_fail(*args: object) -> None:
            if next(calls) == 2:
                raise OSError("disk full")
            original(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "upsert", upsert_or_fail)
        with pytest.raises(OSError, match="disk full"):
            rag.ingest()
        building = rag.components.records.building()
        assert building is not None
        records = rag.components.records.files(building.collection)
        committed = {key for key, r in records.items() if not r.pending_ids}
        assert len(records) > len(committed)  # the failed batch is marked pending
        monkeypatch.setattr(store, "upsert", original)
        report = rag.ingest()
        files = rag.components.records.files(building.collection)
        ids = store.ids(building.collection)
        sparse = rag.components.sparse
        assert sparse is not None and sparse.ids(building.collection) == ids
        total = len(discover_files(rag.components.sources).files)
    assert 0 < len(committed) < total  # the batches before the failing one
    assert report.added == total - len(committed) and report.unchanged == len(committed)
    assert len(files) == total and ids == {i for r in files.values() for i in r.chunk_ids}
