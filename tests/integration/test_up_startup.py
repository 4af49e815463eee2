"""`llmops up` as a probe sees it: the port is taken (or refused) before any model loads, and
the server answers while its first ingestion runs: /health 200, /ready 503 "indexing n/m
files", queries 503 saying so, then /ready 200 and answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_corpus
from tests.up_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LLMOPS = str(Path(sys.executable).parent / "llmops")


def _big_corpus(root: Path, files: int = 60) -> None:
    """Enough text that the bundled model takes several seconds to embed it on 2 cores."""
    pages = {
        f"catalogue/part-{i:03d}.md": f"# Part {i}\n\n"
        + "\n\n".join(
            f"Widget {i}-{j} ships with a {j}-year warranty, a spare battery and a manual "
            f"that explains calibration step {j} in detail." * 3
            for j in range(6)
        )
        for i in range(files)
    }
    write_corpus(root, pages)


def _config(tmp_path: Path) -> Path:
    write_corpus(tmp_path / "docs")
    _big_corpus(tmp_path / "docs")
    config = tmp_path / "app.yaml"
    config.write_text(
        "name: startup\ndata_dir: data\nsources: [{path: docs, include: ['**/*.md']}]\n"
        "chunker: {type: markdown, chunk_size: 300, chunk_overlap: 30}\n"
    )
    return config


def test_a_busy_port_is_reported_before_any_model_loads(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        started = time.perf_counter()
        result = subprocess.run(
            [LLMOPS, "up", str(config), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "NO_COLOR": "1"},
        )
        elapsed = time.perf_counter() - started
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "address already in use" in result.stderr
    assert "ingest" not in result.stdout + result.stderr  # nothing was loaded or indexed
    assert not (tmp_path / "data").exists()
    assert elapsed < 30, elapsed


def test_the_server_answers_while_its_first_ingestion_runs(tmp_path: Path) -> None:
    config = _config(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "up.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [LLMOPS, "up", str(config), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1", "LLMOPS_PROGRESS_INTERVAL": "1"},
            start_new_session=True,
        )
    try:
        seen = _watch(base, process, log_path)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    text = log_path.read_text()
    assert seen["indexing"], text  # /ready said "indexing n/m files" while the index was built
    assert seen["query_refused"] and "not ready yet: indexing" in seen["query_refused"]
    assert seen["answered"], text
    assert "ingest: " in text and "files" in text  # progress lines while serving
    assert "updated collection" in text or "rebuilt collection" in text


def _watch(base: str, process: subprocess.Popen[bytes], log: Path) -> dict[str, str]:
    """Poll /health, /ready and /query from the first moment until an answer comes."""
    seen = {"indexing": "", "query_refused": "", "answered": ""}
    deadline = time.time() + 240
    while time.time() < deadline and not seen["answered"]:
        assert process.poll() is None, log.read_text()
        try:
            health = httpx.get(f"{base}/health", timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        assert health.status_code == 200
        ready = httpx.get(f"{base}/ready", timeout=5)
        reason = str(ready.json()["reason"])
        if ready.status_code == 503 and reason.startswith("indexing"):
            seen["indexing"] = reason
            query = httpx.post(f"{base}/query", json={"question": "warranty?"}, timeout=30)
            if query.status_code == 503:
                seen["query_refused"] = str(query.json()["detail"])
        elif ready.status_code == 200:
            answer = httpx.post(f"{base}/query", json={"question": "warranty?"}, timeout=30)
            assert answer.status_code == 200, answer.text
            seen["answered"] = str(answer.json()["answer"])
        time.sleep(0.2)
    return seen
