"""`llmops ingest` writing to a pipe or a CI log: progress lines at a steady interval."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import numpy as np
import pytest
from typer.testing import CliRunner

from llmops.cli.main import app
from llmops.pipelines import ingest
from llmops.rag.embedders.hashing import HashingEmbedder
from tests.conftest import HASHING, ConfigWriter

LINE = re.compile(r"^ingest: (\d+)/(\d+) files, (\d+) chunks, \d+\.\d chunks/s, \d+s elapsed$")


@pytest.fixture
def slow_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    """One chunk per embedding call, 0.15 s each: an ingestion of a few seconds."""
    embed = HashingEmbedder.embed_documents

    def slow(self: HashingEmbedder, texts: Sequence[str]) -> np.ndarray:
        time.sleep(0.15)
        return embed(self, texts)

    monkeypatch.setattr(HashingEmbedder, "embed_documents", slow)
    monkeypatch.setattr(ingest, "BATCH_CHUNKS", 1)


@pytest.mark.usefixtures("slow_embedding")
def test_plain_progress_lines_at_the_interval_when_not_a_terminal(
    write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_PROGRESS_INTERVAL", "0.1")
    result = CliRunner().invoke(app, ["ingest", str(write_config(embedder=HASHING))])
    assert result.exit_code == 0, result.output
    lines = [m.groups() for m in map(LINE.match, result.stderr.splitlines()) if m]
    assert len(lines) >= 4, result.stderr
    assert any(int(done) < int(total) for done, total, _ in lines)  # printed while running
    assert lines[-1][:2] == ("4", "4") and int(lines[-1][2]) > 4
    assert "\x1b[" not in result.stderr and "━" not in result.stderr
    assert "4 added" in result.stdout


def test_a_bad_interval_is_a_clear_error(
    write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_PROGRESS_INTERVAL", "soon")
    result = CliRunner().invoke(app, ["ingest", str(write_config(embedder=HASHING))])
    assert result.exit_code == 2
    assert "LLMOPS_PROGRESS_INTERVAL" in result.stderr and "'soon'" in result.stderr
