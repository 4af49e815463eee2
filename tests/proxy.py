"""A round-robin TCP reverse proxy on 127.0.0.1, standing in for the load balancer in front of
several `llmops up` replicas: each accepted connection goes to the next upstream port in turn
(layer 4, as a Kubernetes Service or nginx's ``stream`` module balance), and bytes are copied
both ways until both sides are done. HTTP keep-alive connections stay on their replica.

    python -m tests.proxy PORT UPSTREAM_PORT [UPSTREAM_PORT ...]

``running_proxy`` starts it as a subprocess (its own process group) and stops it by its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
CHUNK = 1 << 16


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then pass the end on (a half-close), so a peer that stops
    sending still gets the other side's answer."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def serve(port: int, upstreams: list[int]) -> None:
    turn = itertools.cycle(upstreams)

    async def connect(client: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream, upstream_w = await asyncio.open_connection(HOST, next(turn))
        except OSError:  # the replica is down: the client sees its connection closed
            client_w.close()
            return
        try:
            await asyncio.gather(_pipe(client, upstream_w), _pipe(upstream, client_w))
        finally:
            for writer in (client_w, upstream_w):
                writer.close()

    server = await asyncio.start_server(connect, HOST, port, backlog=2048)
    async with server:
        await server.serve_forever()


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait until ``port`` accepts connections, or fail if ``process`` exits or takes too long."""
    deadline = time.time() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the process serving port {port} exited ({process.returncode})")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline:
                raise RuntimeError(f"nothing listens on port {port} after {timeout} s") from None
            time.sleep(0.1)


@contextmanager
def running_proxy(port: int, upstreams: list[int]) -> Iterator[int]:
    """The proxy on ``port`` in front of the ``upstreams`` ports, for the block's duration."""
    command = [sys.executable, "-m", "tests.proxy", str(port), *map(str, upstreams)]
    process = subprocess.Popen(
        command, cwd=ROOT, start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        wait_listening(port, process)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: python -m tests.proxy PORT UPSTREAM_PORT [UPSTREAM_PORT ...]")
    port, *upstreams = map(int, argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(port, upstreams))


if __name__ == "__main__":
    main(sys.argv[1:])
