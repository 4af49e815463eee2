"""prometheus-client multiprocess mode: two worker processes write to one folder and one
scrape returns the sum of both."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmops.monitoring.metrics import Metrics, prepare_multiprocess_dir

WORKER = """
import sys
from llmops.monitoring.events import QueryEvent
from llmops.monitoring.metrics import Metrics

queries = int(sys.argv[1])
metrics = Metrics("app")
for n in range(queries):
    event = QueryEvent(f"r{n}", "q", "app", "extractive", latency_ms=20.0,
                       prompt_tokens=10, stages={"embed": 0.004, "generate": 0.01})
    metrics.query(event)
    metrics.http_request("/query", "POST", 200, 0.02, {"backend": "extractive"})
metrics.index_size(100 + queries)
metrics.drift({"embedding": {"p_value": 0.5}}, {"any": False})
"""


def test_two_processes_aggregate_into_one_scrape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "prom"
    folder.mkdir()
    (folder / "stale.db").write_bytes(b"from an earlier run")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # restored after the test
    prepare_multiprocess_dir(folder)
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder)
    assert not (folder / "stale.db").exists()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(n)], env=env) for n in (3, 5)]
    assert [w.wait(timeout=60) for w in workers] == [0, 0]

    scrape = "import sys; from llmops.monitoring.metrics import Metrics; "
    scrape += "sys.stdout.buffer.write(Metrics('app').render()[0])"
    # a third worker answers the scrape: in multiprocess mode it reads every process's files
    body = subprocess.run(
        [sys.executable, "-c", scrape], env=env, capture_output=True, check=True, timeout=60
    ).stdout
    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            values[(s.name, frozenset(s.labels.items()))] = s.value

    def get(name: str, **labels: str) -> float:
        return sum(v for (n, key), v in values.items() if n == name and set(labels.items()) <= key)

    assert get("llmops_queries_total") == 8
    assert get("llmops_http_requests_total", route="/query", status="200") == 8
    assert get("llmops_http_request_duration_seconds_count") == 8
    assert get("llmops_http_request_duration_seconds_bucket", le="+Inf") == 8
    assert get("llmops_stage_duration_seconds_count", stage="embed") == 8
    assert get("llmops_tokens_total", direction="in") == 80
    assert get("llmops_query_duration_seconds_sum") == pytest.approx(8 * 0.02)
    assert get("llmops_index_chunks") == 105  # the max over workers
    assert get("llmops_drift_score", statistic="p_value") == 0.5


def test_a_multiprocess_folder_named_later_does_not_hide_this_processs_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``import feast`` (by any library) sets PROMETHEUS_MULTIPROC_DIR after prometheus_client
    was imported in single-process mode; /metrics read that folder instead of its own samples
    (found when an eval run imported feast before a test's scrape)."""
    metrics = Metrics("app")
    metrics.http_request("/query", "POST", 200, 0.02, {"backend": "extractive"})
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    body, _ = metrics.render()
    assert "llmops_http_requests_total{" in body.decode()
