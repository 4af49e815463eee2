"""`llmops up --workers 2`: the parent builds the index once, two worker processes answer,
and an ingestion through the API (which would reach only one of them) is refused."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import HASHING, ConfigWriter
from tests.up_server import llmops_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _worker_processes(parent: int) -> list[int]:
    """Children of ``parent`` started by multiprocessing's spawn (uvicorn's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def test_two_workers_serve_one_index(write_config: ConfigWriter, tmp_path: Path) -> None:
    config = write_config(embedder=HASHING)
    with llmops_up(config, "--workers", "2") as (base, pid):
        answers = [
            httpx.post(f"{base}/query", json={"question": "How do I restore a backup?"}, timeout=30)
            for _ in range(6)
        ]
        refused = httpx.post(f"{base}/ingest", json={}, timeout=30)
        scrapes = [httpx.get(f"{base}/metrics", timeout=30).text for _ in range(4)]
        workers = _worker_processes(pid)
        multiproc_dir = tmp_path / "data" / "prometheus"
        assert multiproc_dir.is_dir()
    assert all(a.status_code == 200 for a in answers)
    assert {a.json()["sources"][0]["source"] for a in answers} == {"docs/backup.md"}
    assert refused.status_code == 409 and "2 worker processes" in refused.json()["detail"]
    assert len(workers) == 2
    # whichever worker answers a scrape, it counts the queries both of them served
    assert [_queries(scrape) for scrape in scrapes] == [6.0] * 4


def _queries(scrape: str) -> float:
    families = text_string_to_metric_families(scrape)
    return sum(s.value for f in families for s in f.samples if s.name == "llmops_queries_total")
