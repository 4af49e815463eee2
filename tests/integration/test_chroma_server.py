"""The same app against a real Chroma server (``chroma run``), started and stopped here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops import RAG
from tests.conftest import HASHING, ConfigWriter
from tests.up_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    chroma = Path(sys.executable).with_name("chroma")
    proc = subprocess.Popen(
        [
            str(chroma),
            "run",
            "--path",
            str(tmp_path / "server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("chroma server did not start") from None
                time.sleep(0.3)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_ingest_and_query_against_a_chroma_server(
    write_config: ConfigWriter, chroma_server: int
) -> None:
    store = {"type": "chroma", "host": "127.0.0.1", "port": chroma_server}
    config = write_config(embedder=HASHING, store=store)
    with RAG.from_config(config) as rag:
        first = rag.ingest()
        assert first.chunks_total > 4
        assert rag.ingest().embed_calls == 0
        answer = rag.query("restore a backup", score_threshold=-1.0)
        assert answer.sources and answer.sources[0].source == "docs/backup.md"
        assert rag.components.store.collections() == [first.collection]
