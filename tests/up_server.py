"""Run `llmops up` as a real subprocess for a test, wait until it is ready, stop its process
group afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def llmops_up(config: Path, *args: str, timeout: float = 120) -> Iterator[tuple[str, int]]:
    """Yield the base URL and the process id of `llmops up CONFIG ARGS` once /ready says 200."""
    port = free_port()
    llmops = Path(sys.executable).parent / "llmops"
    log_path = config.parent / f"up-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(llmops), "up", str(config), "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, process, log_path, timeout)
            yield base, process.pid
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.time() < deadline, f"llmops up did not become ready:\n{log.read_text()}"
        time.sleep(0.3)
