"""Ingestion on Ray (``ingest.engine: ray``) against in-process ingestion: the same chunk ids,
records and store content; incremental runs; a Ray job killed mid-way and re-run ends with a
clean run's index; a cluster that does not answer is a clear error. One local Ray (2 CPUs) is
shared by the module and shut down after it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmops import RAG
from llmops.errors import ConfigError, IngestError
from llmops.ray_cluster import LOCAL, connect
from tests.conftest import HASHING, ConfigWriter
from tests.integration.test_kill_resume import _big_corpus

pytestmark = [pytest.mark.slow, pytest.mark.integration]
pytest.importorskip("ray")

Records = dict[str, tuple[str, tuple[str, ...], str | None]]


@pytest.fixture(scope="module")
def gcs_address() -> Iterator[str]:
    """The address of the module's local Ray, which this process is connected to."""
    ray = connect(LOCAL, num_cpus=2)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def _ray(address: str = LOCAL, workers: int = 2) -> dict[str, Any]:
    return {"engine": "ray", "ray": {"address": address, "workers": workers, "batch_size": 2}}


def _index(config: Path) -> tuple[Records, dict[str, np.ndarray]]:
    """The records of the active collection and every chunk's vector, checked for leftovers:
    nothing pending, the store and the BM25 index hold the same ids, no duplicates."""
    with RAG.from_config(config) as rag:
        c = rag.components
        active = c.records.active()
        assert active is not None
        files = c.records.files(active.collection)
        assert all(not r.pending_ids for r in files.values())
        ids = c.store.ids(active.collection)
        assert c.store.count(active.collection) == len(ids)
        assert c.sparse is not None and c.sparse.ids(active.collection) == ids
        assert ids == {i for r in files.values() for i in r.chunk_ids}
        vectors = c.store.vectors(active.collection, sorted(ids))
    return {k: (r.content_hash, r.chunk_ids, r.error) for k, r in files.items()}, vectors


def _assert_same(a: Path, b: Path) -> None:
    records_a, vectors_a = _index(a)
    records_b, vectors_b = _index(b)
    assert records_a == records_b
    assert vectors_a.keys() == vectors_b.keys()
    for key, vector in vectors_a.items():
        np.testing.assert_allclose(vector, vectors_b[key], atol=1e-5)


def test_same_index_as_in_process_with_minilm(
    gcs_address: str, write_config: ConfigWriter, corpus: Path
) -> None:
    (corpus / "blank.md").write_text("  \n")  # no text: recorded as skipped, both ways
    local = write_config("local.yaml", data_dir="data-local")
    on_ray = write_config("ray.yaml", data_dir="data-ray", ingest=_ray(workers=1))
    with RAG.from_config(local) as rag:
        expected = rag.ingest()
    with RAG.from_config(on_ray) as rag:
        report = rag.ingest()
    assert report.chunks_embedded == expected.chunks_embedded > 0
    assert report.added == expected.added == 5
    assert report.skipped == expected.skipped == {"docs/blank.md": "no text"}
    assert report.longest_chunk_tokens == expected.longest_chunk_tokens
    _assert_same(local, on_ray)


def test_incremental_runs_on_ray(
    gcs_address: str, write_config: ConfigWriter, corpus: Path
) -> None:
    on_ray = write_config("ray.yaml", data_dir="data-ray", embedder=HASHING, ingest=_ray())
    with RAG.from_config(on_ray) as rag:
        first = rag.ingest()
        install = corpus / "install.md"
        install.write_text(install.read_text() + "\n## Upgrading\n\nRun pip install -U.\n")
        changed = rag.ingest()
        (corpus / "pricing.md").unlink()
        removed = rag.ingest()
        active = rag.components.records.active()
        assert active is not None
        install_chunks = rag.components.records.files(active.collection)["docs/install.md"]
    assert first.added == 4 and first.embed_calls >= 1
    assert (changed.updated, changed.added, changed.unchanged) == (1, 0, 3)
    assert changed.chunks_embedded == len(install_chunks.chunk_ids)
    assert (removed.removed, removed.unchanged, removed.embed_calls) == (1, 3, 0)
    assert removed.chunks_deleted > 0
    clean = write_config("clean.yaml", data_dir="data-clean", embedder=HASHING)
    with RAG.from_config(clean) as rag:
        rag.ingest()
    _assert_same(clean, on_ray)


KILLED_DRIVER = """
import sys, time
from llmops import RAG
from llmops.pipelines import ingest

ingest.BATCH_CHUNKS = 24  # many write batches

def progress(p):
    print(f"progress {p.files_done}", flush=True)
    if p.files_done:
        time.sleep(600)  # stalls the writes: killed here, with more batches embedded on Ray

with RAG.from_config(sys.argv[1]) as rag:
    rag.ingest(progress=progress)
print("done", flush=True)
"""


def test_killed_ray_job_then_rerun_matches_clean_run(
    gcs_address: str, write_config: ConfigWriter, corpus: Path
) -> None:
    _big_corpus(corpus, files=30)
    on_ray = write_config(
        "ray.yaml", data_dir="data-ray", embedder=HASHING, ingest=_ray(gcs_address)
    )
    driver = subprocess.Popen(
        [sys.executable, "-c", KILLED_DRIVER, str(on_ray)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert driver.stdout is not None
    for line in driver.stdout:
        assert not line.startswith("done"), "the ingestion finished before it was killed"
        if line.startswith("progress") and int(line.split()[1]) > 0:
            break
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    with RAG.from_config(on_ray) as rag:
        partial = rag.components.records.building()
        assert partial is not None  # the first build was left unfinished
        committed = rag.components.records.files(partial.collection)
        assert 0 < sum(bool(r.content_hash) for r in committed.values()) < 34
        report = rag.ingest()
    assert report.rebuilt and report.unchanged > 0  # resumed: committed files are not redone
    clean = write_config("clean.yaml", data_dir="data-clean", embedder=HASHING)
    with RAG.from_config(clean) as rag:
        rag.ingest()
    _assert_same(clean, on_ray)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_cluster_that_does_not_answer_is_a_clear_error(
    gcs_address: str, write_config: ConfigWriter
) -> None:
    address = f"ray://127.0.0.1:{_free_port()}"
    config = write_config(embedder=HASHING, ingest=_ray(address))
    with RAG.from_config(config) as rag, pytest.raises(IngestError) as caught:
        rag.ingest()
    message = str(caught.value)
    assert f"{config}: ingest.ray.address" in message
    assert f"cannot connect to Ray at '{address}'" in message
    assert "ray start --head" in message


def test_a_malformed_address_is_a_config_error(write_config: ConfigWriter) -> None:
    config = write_config(embedder=HASHING, ingest=_ray("head-without-port"))
    with pytest.raises(ConfigError) as caught:
        RAG.from_config(config)
    assert "ingest.ray.address" in str(caught.value)
    assert "'head-without-port' is not a Ray address" in str(caught.value)
