"""A real Chroma server (``chroma run``) on a free loopback port, started for a test and
stopped by its process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.up_server import free_port


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[int]:
    """The port of a Chroma server keeping its data under the test's temp dir."""
    with running_chroma(tmp_path / "chroma-server") as port:
        yield port


@contextmanager
def running_chroma(path: Path) -> Iterator[int]:
    """The port of a Chroma server keeping its data in ``path``, for the block's duration."""
    port = free_port()
    chroma = Path(sys.executable).with_name("chroma")
    proc = subprocess.Popen(
        [str(chroma), "run", "--path", str(path), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )  # fmt: skip
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
