"""SIGTERM while requests are in flight: `llmops up` (one process, or a supervisor and its
workers) stops accepting connections, lets every request it took finish with its answer,
writes them all to the request log, and exits 0."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import HASHING, ConfigWriter
from tests.stubs.openai_server import Behaviour, serve
from tests.up_server import _wait_ready, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LLMOPS = str(Path(sys.executable).parent / "llmops")
IN_FLIGHT = 16
LLM_DELAY_S = 2.0  # the stub LLM's answer time: long enough to send SIGTERM meanwhile


def _ask(base: str, i: int) -> httpx.Response:
    question = f"How do I restore a backup? ({i})"
    if i % 2:
        body = {"model": "testapp", "messages": [{"role": "user", "content": question}]}
        return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30)
    return httpx.post(f"{base}/query", json={"question": question}, timeout=30)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _refuses_connections(base: str, pending: list[Future[httpx.Response]]) -> bool:
    """True once a new connection is refused while some request is still in flight."""
    while not all(f.done() for f in pending):
        try:
            httpx.get(f"{base}/health", timeout=1)
        except httpx.ConnectError:
            return not all(f.done() for f in pending)
        except httpx.TransportError:
            pass  # accepted, then reset or left unanswered: not refused
        time.sleep(0.05)
    return False


def _logged_ids(data_dir: Path) -> set[str]:
    with sqlite3.connect(data_dir / "requests.sqlite") as db:
        return {row[0] for row in db.execute("SELECT request_id FROM requests")}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_drains_requests_in_flight(
    write_config: ConfigWriter, tmp_path: Path, workers: str
) -> None:
    behaviour = Behaviour(models=("stub",), delay_s=LLM_DELAY_S)
    with serve(behaviour) as url:
        generator = {"type": "openai_compat", "base_url": url, "model": "stub", "max_retries": 0}
        config = write_config(embedder=HASHING, generator=generator)
        port, log_path = free_port(), tmp_path / "up.log"
        base = f"http://127.0.0.1:{port}"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [LLMOPS, "up", str(config), "--port", str(port), "--workers", workers],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1"},
                start_new_session=True,
            )
        try:
            _wait_ready(base, process, log_path, timeout=60)
            behaviour.requests.clear()  # a health check at start, if any
            with ThreadPoolExecutor(IN_FLIGHT) as pool:
                pending = [pool.submit(_ask, base, i) for i in range(IN_FLIGHT)]
                _wait_for(lambda: len(behaviour.requests) == IN_FLIGHT, 20, "requests not sent")
                process.send_signal(signal.SIGTERM)  # every request is waiting on the LLM now
                refused = _refuses_connections(base, pending)
                answers = [f.result() for f in pending]
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    text = log_path.read_text()
    assert [a.status_code for a in answers] == [200] * IN_FLIGHT, text
    assert refused, "a new connection was accepted after SIGTERM"
    assert code == 0, text
    serving = text.split("Started parent process")[-1]  # after a first ingestion's own server
    assert serving.count("Application shutdown complete") == int(workers), text
    answered = {a.headers["x-request-id"] for a in answers}
    assert len(answered) == IN_FLIGHT
    assert answered <= _logged_ids(tmp_path / "data"), "answered requests missing from the log"
