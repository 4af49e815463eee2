"""Drift checks kept across restarts (``drift.sqlite`` in the data dir): the store's retention
by count and age, a check made though it cannot be kept, and a real app whose checks are still
in ``GET /drift``'s report after it was closed and built anew."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from llmops import RAG
from llmops.config.monitoring import DriftConfig
from llmops.errors import StorageError
from llmops.monitoring.drift_history import HISTORY_FILE, DriftHistory
from llmops.monitoring.drift_monitor import DriftMonitor, reference_window
from llmops.monitoring.events import QueryEvent
from tests.conftest import HASHING, ConfigWriter

SHORT = [f"{verb} {topic}?" for verb in ("Why", "How", "When") for topic in ("backup", "price")]
LONG = "Could you explain in detail, step by step, everything about {} in Widgetron?"
DAY_S = 86400


def _check(at: float, detected: bool = False) -> dict[str, Any]:
    signal = {"statistic": 0.5, "p_value": 0.001 if detected else 0.4, "detected": detected}
    signals = {"query_chars": {**signal, "psi": 0.3, "level": 0.002}}
    drifted = ["query_chars"] if detected else []
    sizes = {"reference_size": 30, "current_size": 20, "alpha": 0.01}
    verdict = {"alert": detected, "detected": detected, "drifted": drifted}
    return {"time": at, **verdict, **sizes, "signals": signals}


def test_the_newest_checks_within_the_retention_are_kept(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    history = DriftHistory(path, keep_checks=3, keep_days=1)
    history.open()
    now = time.time()
    history.add(_check(now - 3 * DAY_S))  # older than keep_days: dropped as soon as it is in
    assert history.count() == 0
    checks = [_check(now + i, detected=i == 4) for i in range(5)]
    for check in checks:
        history.add(check)
    assert history.count() == 3
    assert history.recent(10) == checks[2:]  # oldest first, as they were added
    assert history.recent(2) == checks[3:]
    history.close()
    reopened = DriftHistory(path, keep_checks=10, keep_days=None)
    reopened.open()
    try:
        assert reopened.recent(10) == checks[2:]
    finally:
        reopened.close()


def test_a_check_that_cannot_be_kept_is_still_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = DriftConfig.model_validate({"reference": {"dataset": "unused"}, "window": 20})
    history = DriftHistory(tmp_path / HISTORY_FILE, 10, None)
    monitor = DriftMonitor(config, lambda: reference_window(SHORT * 4), history)
    history.open()

    def disk_full(check: dict[str, Any]) -> None:
        raise StorageError(str(history.path), "disk full (no space left on device)")

    monkeypatch.setattr(history, "add", disk_full)
    for n in range(20):
        monitor.observe(QueryEvent(f"q{n}", LONG.format(n), "app", "x", scores=(0.7,)))
    with caplog.at_level(logging.ERROR, logger="llmops.drift"):
        result = monitor.check()
    history.close()
    assert result is not None and result.detected and monitor.checks == 1
    assert any("not kept in the history" in r.getMessage() for r in caplog.records)


def _wait(condition: Any, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_drift_checks_outlive_the_app(write_config: ConfigWriter, tmp_path: Path) -> None:
    reference = tmp_path / "reference.jsonl"
    reference.write_text("".join(json.dumps({"question": q}) + "\n" for q in SHORT * 4))
    drift = {
        "reference": {"dataset": str(reference)},
        "window": 20,
        "every_requests": 20,
        "every_minutes": None,
    }
    config = write_config(embedder=HASHING, monitoring={"drift": drift})
    with RAG.from_config(config) as rag:
        rag.ingest()
        for topic in ("backups", "pricing", "installing", "colours") * 5:
            rag.query(LONG.format(topic))
        assert _wait(lambda: rag.history.drift()["checks"] >= 1), "no drift check after 20 queries"
        before = rag.history.drift()
    with RAG.from_config(config) as rag:  # built anew on the same data dir
        after = rag.history.drift()
    assert after["checks"] == 0 and after["kept"] == before["kept"] == 1
    assert after["history"] == before["history"]
    check = after["history"][0]
    assert check["detected"] and check["alert"] and "query_chars" in check["drifted"]
    signal = check["signals"]["query_chars"]
    assert signal["p_value"] < signal["level"] and signal["psi"] > 0
    assert (check["current_size"], check["reference_size"]) == (20, len(SHORT) * 4)
    assert (tmp_path / "data" / HISTORY_FILE).is_file()
