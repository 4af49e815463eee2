"""A real redis-server on a free loopback port (no persistence), started for a test or a
benchmark and stopped by its process group."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from tests.up_server import free_port


@contextmanager
def running_redis() -> Iterator[str]:
    """The ``redis://`` URL of a fresh redis-server, for the block's duration."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not installed (.ci/run installs it)")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.time() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.time() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
