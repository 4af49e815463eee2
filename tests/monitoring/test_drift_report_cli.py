"""`llmops drift report` (Evidently HTML + JSON summary) and `llmops requests export` over a
request log filled by a real app."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from llmops import RAG
from llmops.cli.drift_cmd import parse_reference, parse_time
from llmops.cli.main import app
from llmops.errors import InvalidRequest
from tests.conftest import HASHING, ConfigWriter
from tests.monitoring.test_drift import OTHER_QUESTIONS, WIDGET_QUESTIONS

runner = CliRunner()


def test_time_and_reference_parsing(tmp_path: Path) -> None:
    assert parse_time("2h") == pytest.approx(time.time() - 7200, abs=5)
    assert parse_time("2026-11-01") == 1793491200.0  # naive times are UTC
    with pytest.raises(InvalidRequest, match="not a time"):
        parse_time("yesterday")
    period = parse_reference("2026-10-01..2026-10-02")
    assert period.since is not None and period.until is not None and period.dataset is None
    with pytest.raises(InvalidRequest, match="neither a file"):
        parse_reference(str(tmp_path / "missing.jsonl"))


@pytest.mark.slow
def test_drift_report_writes_html_and_summary(write_config: ConfigWriter, tmp_path: Path) -> None:
    reference = tmp_path / "reference.jsonl"
    reference.write_text("\n".join(json.dumps({"question": q}) for q in WIDGET_QUESTIONS * 5))
    config = write_config(embedder=HASHING)
    with RAG.from_config(config) as rag:
        rag.ingest()
        for i in range(30):
            rag.query(OTHER_QUESTIONS[i % 4] if i % 3 else WIDGET_QUESTIONS[i % 8])
    out = tmp_path / "report"
    args = ["drift", "report", "-c", str(config), "--since", "1h", "--reference", str(reference)]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 3, result.output  # 3: drift detected
    summary = json.loads((out / "drift-summary.json").read_text())
    assert summary["drift"]["detected"] and "embedding" in summary["drift"]["drifted"]
    assert summary["drift"]["current_size"] == 30 and summary["drift"]["reference_size"] == 40
    columns = summary["evidently"]["columns"]
    assert {"query_chars", "embedding_pc1", "embedding_pc2"} <= set(columns)
    assert summary["evidently"]["drifted_columns"]["count"] >= 1
    html = (out / "drift-report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") or "<html" in html[:1000]
    assert "embedding_pc1" in html

    exported = tmp_path / "log.parquet"
    result = runner.invoke(app, ["requests", "export", str(exported), "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert pq.read_table(exported).num_rows == 30

    nothing = runner.invoke(app, [*args[:-2], "--out", str(out)])
    assert nothing.exit_code == 1 and "no reference" in nothing.output
