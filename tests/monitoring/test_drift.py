"""Drift statistics (PSI, KS, MMD permutation test) and the background checker end to end:
a real app whose traffic changes domain raises the gauge, logs and calls the webhook."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from llmops import RAG
from llmops.config.monitoring import MonitoringConfig
from llmops.errors import DatasetError
from llmops.monitoring.drift import EMBEDDING, Window, compare, mmd_test, psi
from llmops.monitoring.events import QueryEvent
from llmops.monitoring.monitor import Monitor
from tests.conftest import HASHING, ConfigWriter

rng = np.random.default_rng(7)


def test_psi_is_zero_for_the_same_sample_and_large_for_a_shift() -> None:
    x = rng.normal(size=2000)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-9)
    assert psi(x, rng.normal(size=2000)) < 0.05
    assert psi(x, rng.normal(1.0, size=2000)) > 0.2
    assert psi(np.zeros(50), np.ones(50)) > 1  # a constant reference still works


def test_mmd_permutation_test_separates_shifted_embeddings() -> None:
    a, b = rng.normal(size=(150, 32)), rng.normal(size=(100, 32))
    _, p_same = mmd_test(a, b, permutations=200)
    _, p_shift = mmd_test(a, b + 0.4, permutations=200)
    assert p_same > 0.05
    assert p_shift == pytest.approx(1 / 201)


def test_compare_names_the_drifted_signals() -> None:
    ref = Window({"latency_ms": rng.normal(50, 5, 300), "query_chars": rng.normal(60, 9, 300)})
    cur = Window({"latency_ms": rng.normal(65, 5, 100), "query_chars": rng.normal(60, 9, 100)})
    result = compare(ref, cur, alpha=0.01)
    assert result.detected and result.drifted == ["latency_ms"]
    latency = result.signals["latency_ms"]
    assert latency.p_value < 1e-6 and latency.psi is not None and latency.psi > 0.5
    assert json.loads(json.dumps(result.to_dict()))["drifted"] == ["latency_ms"]


def test_false_alarms_stay_under_alpha_without_a_shift() -> None:
    alarms = 0
    for trial in range(60):
        local = np.random.default_rng(trial)
        pool = local.normal(size=(240, 16))
        signals = local.normal(size=(240, 3))
        ref, cur = slice(0, 140), slice(140, 240)
        alarms += compare(
            Window({f"s{i}": signals[ref, i] for i in range(3)}, pool[ref]),
            Window({f"s{i}": signals[cur, i] for i in range(3)}, pool[cur]),
            alpha=0.05,
            permutations=100,
        ).detected
    assert alarms <= 6  # 5% expected; generous for 60 trials


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", _Receiver.received
    server.shutdown()
    server.server_close()


WIDGET_QUESTIONS = [
    "How do I install widgetron?",
    "How do I restore a backup?",
    "What does the team edition cost?",
    "How do I change the widget colour?",
    "Which Python version does widgetron need?",
    "When are invoices sent?",
    "Where are nightly backups written?",
    "How do I print the installed version?",
]
OTHER_QUESTIONS = [
    "What temperature should sourdough bread bake at for a crisp crust in a dutch oven?",
    "Which hiking trails in the Alps are open in early spring without snow equipment?",
    "How long should I steep green tea leaves to avoid a bitter taste?",
    "What is the offside rule in association football and when does it apply?",
]


@pytest.mark.slow
def test_background_check_raises_gauge_log_and_webhook(
    write_config: ConfigWriter,
    tmp_path: Path,
    webhook: tuple[str, list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, received = webhook
    reference = tmp_path / "reference.jsonl"
    questions = WIDGET_QUESTIONS * 10
    reference.write_text("\n".join(json.dumps({"question": q}) for q in questions))
    drift = {
        "reference": {"dataset": str(reference)},
        "window": 40,
        "every_requests": 20,
        "every_minutes": None,
        "webhook_url": url,
    }
    config = write_config(embedder=HASHING, monitoring={"drift": drift})
    caplog.set_level(logging.WARNING, logger="llmops.drift")
    with RAG.from_config(config) as rag:
        rag.ingest()
        for i in range(40):
            rag.query(WIDGET_QUESTIONS[(i * 3) % 8])
        assert _wait(lambda: rag.monitor.drift is not None and rag.monitor.drift.checks >= 2)
        assert rag.monitor.drift is not None and rag.monitor.drift.last is not None
        assert not rag.monitor.drift.last.detected and not received
        for i in range(40):
            rag.query(OTHER_QUESTIONS[i % 4])
        assert _wait(lambda: bool(received))
        drifted = rag.monitor.drift.last
        assert drifted is not None and drifted.detected and EMBEDDING in drifted.drifted
        assert rag.monitor.metrics is not None
        body = rag.monitor.metrics.render()[0].decode()
    alert = received[0]
    assert alert["event"] == "drift_detected" and EMBEDDING in alert["drifted"]
    assert alert["pipeline"] == "testapp" and alert["signals"][EMBEDDING]["p_value"] < 0.005
    assert 'llmops_drift_detected{pipeline="testapp",signal="any"} 1.0' in body
    assert 'llmops_drift_score{pipeline="testapp",signal="embedding",statistic="p_value"}' in body
    assert any("drift detected in" in r.getMessage() for r in caplog.records)
    assert len(received) == 1  # one alert per change to "drift", not one per check


def _wait(condition: Any, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_missing_reference_dataset_fails_at_start(write_config: ConfigWriter) -> None:
    drift = {"reference": {"dataset": "missing.jsonl"}}
    rag = RAG.from_config(write_config(embedder=HASHING, monitoring={"drift": drift}))
    with pytest.raises(DatasetError, match=r"missing\.jsonl does not exist: fix monitoring"):
        rag.start()
    rag.close()


def _letters(texts: Sequence[str]) -> np.ndarray:
    """A small real embedding: normalised letter counts."""
    counts = np.array([[t.lower().count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts])
    return counts / np.maximum(np.linalg.norm(counts, axis=1, keepdims=True), 1e-9)


def test_timer_checks_and_a_reference_period_from_the_log(tmp_path: Path) -> None:
    config = MonitoringConfig.model_validate(
        {
            "metrics": False,
            "request_log": {"path": "log.sqlite"},
            "drift": {
                "reference": {"since": "2020-01-01T00:00:00Z"},
                "every_requests": None,
                "every_minutes": 0.005,  # 0.3 s
            },
        }
    )
    monitor = Monitor(config, "app", tmp_path, embed=_letters)
    monitor.start()
    try:
        assert monitor.request_log is not None and monitor.drift is not None
        for n in range(30):
            question = WIDGET_QUESTIONS[n % 8]
            monitor.request_log.record(
                QueryEvent(f"old{n}", question, "app", "x", scores=(0.7,), latency_ms=20.0 + n % 3)
            )
        reference = monitor.drift.reference()
        assert reference.size == 30 and reference.embeddings is not None
        assert set(reference.signals) == {
            "query_chars", "top_score", "sources_above", "answer_chars", "abstained", "latency_ms"
        }  # fmt: skip
        for n in range(30):  # same questions, but every answer is slow now
            question = WIDGET_QUESTIONS[n % 8]
            monitor.observe(
                QueryEvent(f"new{n}", question, "app", "x", scores=(0.7,), latency_ms=90.0)
            )
        assert _wait(lambda: monitor.drift is not None and monitor.drift.checks >= 1, 10)
        last = monitor.drift.last
        assert last is not None and last.drifted == ["latency_ms"]
    finally:
        monitor.close()
