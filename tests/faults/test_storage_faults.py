"""Storage faults, each reproduced for real: a full disk during ingestion (a small tmpfs), the
Chroma folder locked by another process or damaged on disk, SQLite databases (request log,
prediction log, index records) locked by another process. Each must end in a clear error
naming the file, lose nothing, and recover without repair by hand."""

from __future__ import annotations

import logging
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.build import build, load_config
from llmops.config.monitoring import RequestLogConfig
from llmops.errors import IngestError, StorageError
from llmops.monitoring import prediction_log, request_log
from llmops.monitoring.events import QueryEvent
from llmops.monitoring.prediction_log import PredictedRequest, PredictionLog
from llmops.monitoring.request_log import RequestLog
from llmops.rag.stores import chroma_faults
from llmops.server import create_app
from tests.conftest import HASHING, ConfigWriter

LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def hold_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process takes SQLite's exclusive lock on ``path`` for ``seconds``."""
    assert path.exists(), path
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def generated_corpus(root: Path, files: int) -> None:
    for i in range(files):
        body = "\n\n".join(
            f"## Part {j}\n\nFile {i} section {j} explains widget {i * 100 + j} in detail. "
            + f"Each widget {i}-{j} has a serial number and a colour. " * 6
            for j in range(12)
        )
        (root / f"gen{i:03d}.md").write_text(f"# Generated page {i}\n\n{body}\n")


def index_state(config: Path) -> tuple[set[str], dict[str, tuple[str, ...]]]:
    """The active collection's chunk ids and each file's recorded ids; checks that nothing is
    pending and the store holds exactly the recorded chunks."""
    with RAG.from_config(config) as rag:
        c = rag.components
        active = c.records.active()
        assert active is not None and c.records.building() is None
        records = c.records.files(active.collection)
        assert all(not r.pending_ids for r in records.values())
        ids = c.store.ids(active.collection)
        assert c.store.count(active.collection) == len(ids)
        assert ids == {i for r in records.values() for i in r.chunk_ids}
        return ids, {k: r.chunk_ids for k, r in records.items()}


def llmops_cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "llmops"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300)


# disk full ------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs; unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_disk_full_during_ingestion_is_one_line_and_a_rerun_completes_it(
    write_config: ConfigWriter, corpus: Path, small_disk: Path
) -> None:
    generated_corpus(corpus, 300)
    clean = write_config("clean.yaml", data_dir="clean-data", embedder=HASHING)
    assert llmops_cli("ingest", str(clean)).returncode == 0
    expected = index_state(clean)

    data_dir = small_disk / "data"
    config = write_config("small.yaml", data_dir=str(data_dir), embedder=HASHING)
    failed = llmops_cli("ingest", str(config))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert shutil.disk_usage(small_disk).free < 1024 * 1024  # the disk really filled up
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, failed.stderr
    assert "disk full" in errors[0] and str(data_dir) in errors[0]
    assert "run `llmops ingest` again" in errors[0]
    assert "Traceback" not in failed.stderr + failed.stdout

    still_full = llmops_cli("ingest", str(config))  # no space yet: the same clear line
    assert still_full.returncode == 1 and "disk full" in still_full.stderr
    assert "Traceback" not in still_full.stderr

    # more room (Chroma and the logs write when they open, so nothing opens on a full disk)
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    # what the failed runs committed is consistent: each committed file's chunks are stored
    c = build(load_config(config))
    c.records.open()
    c.store.start()
    try:
        building = c.records.building()
        assert building is not None and c.records.active() is None  # queries wait for it
        committed = [r for r in c.records.files(building.collection).values() if r.content_hash]
        assert 0 < len(committed) < 300
        stored = c.store.ids(building.collection)
        assert all(set(r.chunk_ids) <= stored for r in committed)
    finally:
        c.store.close()
        c.records.close()

    resumed = llmops_cli("ingest", str(config))
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(committed)} unchanged" in resumed.stdout  # resumed: not embedded again
    assert index_state(config) == expected  # no duplicates, no gaps


# Chroma locked -----------------------------------------------------------------------------


@pytest.fixture
def app(write_config: ConfigWriter) -> Iterator[tuple[RAG, TestClient]]:
    rag = RAG.from_config(write_config(embedder=HASHING))
    rag.start()
    rag.ingest()
    with TestClient(create_app(rag)) as client:
        yield rag, client


def test_a_locked_chroma_folder_is_waited_for_then_a_bounded_503(
    app: tuple[RAG, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    rag, client = app
    database = rag.components.data_dir / "chroma" / "chroma.sqlite3"
    monkeypatch.setattr(rag.components.store._probe, "wait_s", 3.0)  # type: ignore[attr-defined]

    short = hold_lock(database, 1.0)  # shorter than the wait: the query waits, then answers
    started = time.monotonic()
    response = client.post("/query", json={"question": "How do I restore a backup?"})
    assert response.status_code == 200 and response.json()["sources"]
    assert time.monotonic() - started > 0.5  # it did wait for the lock
    short.wait()

    long = hold_lock(database, 30.0)  # longer than the wait: a clear 503, no hang
    try:
        started = time.monotonic()
        response = client.post("/query", json={"question": "How do I restore a backup?"})
        waited = time.monotonic() - started
        assert response.status_code == 503, response.text
        message = response.json()["detail"]
        assert f"locked by process {long.pid}" in message and str(database) in message
        assert 3.0 <= waited < 10.0
    finally:
        long.kill()
        long.wait()
    response = client.post("/query", json={"question": "How do I restore a backup?"})
    assert response.status_code == 200 and response.json()["sources"]


def test_ingestion_into_a_locked_chroma_folder_fails_with_the_reason(
    write_config: ConfigWriter, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chroma_faults, "LOCK_WAIT_S", 1.0)
    config = write_config(embedder=HASHING)
    with RAG.from_config(config) as rag:
        rag.ingest()
        (corpus / "new.md").write_text("# New\n\nA new page.\n")
        locker = hold_lock(rag.components.data_dir / "chroma" / "chroma.sqlite3", 30.0)
        try:
            with pytest.raises(IngestError, match="locked by process") as failed:
                rag.ingest()
            assert "chroma.sqlite3" in str(failed.value)
        finally:
            locker.kill()
            locker.wait()
        report = rag.ingest()
        assert report.added == 1 and not report.skipped


# Chroma damaged ----------------------------------------------------------------------------


def test_a_corrupt_chroma_database_is_moved_aside_and_the_next_ingestion_rebuilds(
    write_config: ConfigWriter, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(embedder=HASHING)
    with RAG.from_config(config) as rag:
        rag.ingest()
        folder = rag.components.data_dir / "chroma"
    expected = index_state(config)
    with (folder / "chroma.sqlite3").open("r+b") as f:  # the SQLite header is gone
        f.write(b"\0" * 100)

    rag = RAG.from_config(config)
    with caplog.at_level(logging.ERROR), rag:
        assert any("moved it aside" in r.getMessage() for r in caplog.records)
        aside = list(folder.parent.glob("chroma.corrupt-*"))
        assert len(aside) == 1 and (aside[0] / "chroma.sqlite3").exists()
        with TestClient(create_app(rag)) as client:
            response = client.post("/query", json={"question": "How do I restore a backup?"})
            assert response.status_code == 503
            message = response.json()["detail"]
            assert str(folder) in message and "llmops ingest" in message
            readiness = client.get("/ready")  # not ready either, and says why
            assert readiness.status_code == 503
            assert "missing from the store" in readiness.json()["reason"]
        assert rag.is_stale()  # so `llmops up` rebuilds it at start
        report = rag.ingest()
        assert report.rebuilt and report.chunks_total > 0
    assert index_state(config)[0] == expected[0]


@pytest.mark.slow
def test_a_damaged_hnsw_segment_is_a_clear_error_and_ingest_full_rebuilds(
    write_config: ConfigWriter, corpus: Path
) -> None:
    generated_corpus(corpus, 60)  # enough vectors for Chroma to persist its HNSW files
    config = write_config(embedder=HASHING)
    assert llmops_cli("ingest", str(config)).returncode == 0
    expected = index_state(config)
    folder = config.parent / "data" / "chroma"
    headers = list(folder.glob("*/header.bin"))
    assert len(headers) == 1
    headers[0].write_bytes(random.Random(0).randbytes(100))

    # a fresh process (this one keeps Chroma's index in memory) finds the damage on use
    failed = llmops_cli("query", "widget serial number", "-c", str(config))
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert f"error: {folder}: damaged" in failed.stderr
    assert "llmops ingest --full" in failed.stderr
    rebuilt = llmops_cli("ingest", str(config), "--full")
    assert rebuilt.returncode == 0, rebuilt.stderr
    answered = llmops_cli("query", "widget serial number", "-c", str(config))
    assert answered.returncode == 0, answered.stderr
    assert index_state(config)[0] == expected[0]


def test_a_query_holding_the_collection_a_rebuild_dropped_is_answered_from_the_new_one(
    write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of a query with ``ingest --full``: the query read the active collection and
    took Chroma's handle to it just before the rebuild's swap dropped it."""
    config = write_config(embedder=HASHING)
    with RAG.from_config(config) as rag:
        rag.ingest()
        c = rag.components
        old = c.records.active()
        assert old is not None
        stale = c.store._find(old.collection)  # the handle the query in flight holds
        assert rag.ingest(full=True).rebuilt
        new = c.records.active()
        assert new is not None and old.collection not in c.store.collections()
        with pytest.raises(StorageError, match="is missing"):
            c.store.search(old.collection, [[0.1] * 8], 3)  # never cached, never created
        c.store._collections[old.collection] = stale
        reads = iter([old])
        monkeypatch.setattr(c.records, "active", lambda: next(reads, new))
        answer = rag.query("What colour are new widgets painted?")
        assert answer.sources and old.collection not in c.store._collections


# SQLite busy -------------------------------------------------------------------------------


def test_requests_during_a_request_log_lock_all_answer_and_all_are_logged(
    app: tuple[RAG, TestClient],
) -> None:
    rag, client = app
    log = rag.monitor.request_log
    assert log is not None
    locker = hold_lock(log.store.path, 3.0)
    ids = []
    for _ in range(10):
        response = client.post("/query", json={"question": "How do I restore a backup?"})
        assert response.status_code == 200
        ids.append(response.json()["request_id"])
    assert locker.poll() is None  # the lock was held while the requests came in
    locker.wait()
    log.flush()
    assert {row["request_id"] for row in log.rows()} >= set(ids)
    assert log.dropped == 0


def _event(n: int) -> QueryEvent:
    return QueryEvent(
        request_id=f"r{n}",
        question="q",
        pipeline="app",
        backend="extractive",
        retrieved_ids=("c1",),
        scores=(0.8,),
        answer_chars=1,
        abstained=False,
        latency_ms=1.0,
        time=time.time(),
    )


def test_the_request_log_keeps_rows_locked_out_past_its_bound_and_writes_them_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(request_log, "BUSY_TIMEOUT_S", 0.3)
    log = RequestLog(tmp_path / "requests.sqlite", RequestLogConfig())
    log.start()
    try:
        locker = hold_lock(log.store.path, 2.5)
        with caplog.at_level(logging.ERROR):
            for n in range(20):
                log.record(_event(n))
            log.flush()  # returns: the write failed after the bound, the rows are kept
        assert log.pending == 20 and locker.poll() is None
        assert any("keeping them to retry" in r.getMessage() for r in caplog.records)
        locked = re.escape("requests.sqlite: locked for more than 0.3 s")
        with pytest.raises(StorageError, match=locked):
            log.set_feedback("r1", 1.0)  # feedback answers 503 with the reason, no 500
        assert locker.poll() is None
        locker.wait()
        log.flush()
        assert log.pending == 0 and log.dropped == 0
        assert [r["request_id"] for r in log.rows()] == [f"r{n}" for n in range(20)]
        assert log.set_feedback("r1", 1.0)
    finally:
        log.close()


def test_the_prediction_log_keeps_rows_locked_out_past_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prediction_log, "BUSY_TIMEOUT_S", 0.3)
    log = PredictionLog(tmp_path / "predictions.sqlite")
    log.start()
    try:
        locker = hold_lock(log.path, 2.5)
        request = PredictedRequest(
            "r1", "m", "main", 1, [{"x": 1}, {"x": 2}], [0, 1], [0.2, 0.9], time.time()
        )
        log.record(request)
        log.flush()
        assert log.pending == 1 and locker.poll() is None
        locker.wait()
        assert log.count() == 2 and log.dropped == 0
    finally:
        log.close()


def test_a_records_database_locked_past_the_bound_is_a_clear_ingest_error(
    write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmops.db

    monkeypatch.setattr(llmops.db, "BUSY_TIMEOUT_S", 0.5)
    with RAG.from_config(write_config(embedder=HASHING)) as rag:
        records = rag.components.records.path
        rag.ingest()
        short = hold_lock(records, 0.3)  # within the bound: waited for
        rag.ingest()
        short.wait()
        locker = hold_lock(records, 30.0)
        try:
            with pytest.raises(IngestError) as failed:
                rag.ingest()
        finally:
            locker.kill()
            locker.wait()
        assert f"{records}: locked for more than 0.5 s" in str(failed.value)
        assert rag.ingest().unchanged == 4  # works again, nothing to redo


def test_the_log_writer_drops_only_beyond_what_it_keeps_and_counts_it() -> None:
    from llmops.db import QueuedWriter

    written: list[int] = []
    failing = True
    drops: list[int] = []

    def write(items: list[int]) -> None:
        if failing:
            raise sqlite3.OperationalError("database is locked")
        written.extend(items)

    writer: QueuedWriter[int] = QueuedWriter("test", write, every_s=60, batch=2, keep=5)
    writer.on_drop = drops.append
    writer.start()
    try:
        for n in range(8):
            writer.put(n)
        writer.flush()
        assert writer.pending == 5 and writer.dropped == 3 and drops == [3] and not written
        failing = False
        writer.flush()
        assert written == [3, 4, 5, 6, 7] and writer.pending == 0 and writer.failure is None
    finally:
        writer.close()


def test_dropped_log_rows_are_counted_in_prometheus(tmp_path: Path) -> None:
    """The request log's drops reach ``llmops_log_rows_dropped_total`` (its writer failing as
    on a file locked past the wait, with a backlog of 2 rows)."""
    from llmops.config.monitoring import RequestLogConfig
    from llmops.monitoring.metrics import Metrics
    from llmops.monitoring.request_log import RequestLog

    metrics = Metrics("dropper")
    on_drop = metrics.rows_dropped("requests")
    log = RequestLog(tmp_path / "requests.sqlite", RequestLogConfig(), 0.5, on_drop)
    log._writer.keep, log._writer.write = 2, _always_locked
    log.start()
    try:
        for n in range(3):
            log._writer.put(n)  # type: ignore[arg-type]
        log._writer.flush()
        assert log.dropped == 1
    finally:
        log._writer.write = lambda items: None
        log.close()
    text = metrics.render()[0].decode()
    assert 'llmops_log_rows_dropped_total{log="requests",pipeline="dropper"} 1.0' in text


def _always_locked(items: list[object]) -> None:
    raise sqlite3.OperationalError("database is locked")


def test_a_locked_key_store_still_verifies_keys_and_a_damaged_one_is_a_503(
    write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """WAL readers are not blocked by another process's write lock: keys are still verified
    (only their last use waits for a later request), and creating a key says the file is
    locked. A damaged key store refuses with 503 naming the file, never a 500."""
    from llmops.access.keys import WAIT_S, KeyStore
    from tests.server.test_auth import QUESTION, SECRET, bearer, serve

    monkeypatch.setenv("LLMOPS_KEY_SECRET", SECRET)
    auth = {"enabled": True, "cache_ttl_s": 0}
    for client, keys in serve(write_config(embedder=HASHING, server={"auth": auth})):
        _, key = keys.create("locked-out", ["query"])
        locker = hold_lock(keys.path, 30.0)
        try:
            with caplog.at_level(logging.WARNING):
                answered = client.post("/query", json=QUESTION, headers=bearer(key))
            with pytest.raises(
                StorageError, match=f"keys.sqlite: locked for more than {WAIT_S:g} s"
            ):
                keys.create("while-locked", ["query"])
        finally:
            locker.kill()
            locker.wait()
        assert answered.status_code == 200
        assert any("last use not stored" in r.getMessage() for r in caplog.records)

        # a damaged file as SQLite reports it on a read (a live connection keeps serving
        # pages from its cache after its file is overwritten, so the read is made to fail)
        monkeypatch.setattr(KeyStore, "db", property(lambda self: _Malformed()))
        damaged = client.post("/query", json=QUESTION, headers=bearer(key))
        assert damaged.status_code == 503, damaged.text
        assert "keys.sqlite: corrupt" in damaged.json()["detail"]


class _Malformed:
    def execute(self, *args: object) -> None:
        raise sqlite3.DatabaseError("database disk image is malformed")
