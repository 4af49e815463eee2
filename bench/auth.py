"""What API keys and the per-key rate limit cost per request: p50 with and without, side by
side in one process.

    python bench/auth.py [--requests 3000] [--rounds 5]

Apps over a small corpus (hashing embedder, extractive answers) differ only in
``server.auth``: off; keys on; keys on plus an in-process rate and concurrency limit; and,
when a Redis answers at ``--redis`` (default redis://127.0.0.1:6379/0), the same limits in
Redis (one EVALSHA for the bucket, one for the concurrency slot, one ZREM). Each is driven as a raw
ASGI app (no HTTP client in the way) on ``GET /v1/models``, a cheap route that needs the
``query`` scope; requests go to the three apps in turn, so background load hits all alike.
Reported: the median over rounds of each round's p50 and p99, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from common import emit, machine, median, percentile, write_app

from llmops import RAG
from llmops.access.keys import KeyStore, server_secret
from llmops.config.auth import SECRET_ENV
from llmops.server import create_app

RUNNING: list[asyncio.Future[None]] = []  # the apps' lifespans, kept until the end
LIMITS = {"requests_per_minute": 10_000_000, "concurrent": 1_000}
AUTH: dict[str, dict[str, Any]] = {
    "off": {"enabled": False},
    "keys": {"enabled": True},
    "keys+limit": {"enabled": True, "limits": LIMITS},
}


async def call(app: Any, headers: list[tuple[bytes, bytes]]) -> float:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/v1/models", "raw_path": b"/v1/models", "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }  # fmt: skip
    status = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    start = time.perf_counter()
    await app(scope, receive, send)
    elapsed = time.perf_counter() - start
    assert status == [200], status
    return elapsed * 1000


async def lifespan(app: Any) -> None:
    messages = iter([{"type": "lifespan.startup"}])

    async def receive() -> dict[str, Any]:
        return next(messages, None) or await asyncio.Event().wait()  # type: ignore[func-returns-value]

    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        started.set()

    task = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    )
    RUNNING.append(task)
    await started.wait()


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


async def main(requests: int, rounds: int, redis_url: str) -> dict[str, Any]:
    os.environ.setdefault(SECRET_ENV, "bench-secret-0123456789abcdef")
    auth_variants = dict(AUTH)
    if redis_answers(redis_url):
        auth_variants["keys+redis"] = {
            "enabled": True, "limits": LIMITS, "limiter": "redis", "redis_url": redis_url,
            "redis_prefix": f"llmops-bench-{os.getpid()}",
        }  # fmt: skip
    folder = Path(tempfile.mkdtemp())
    (folder / "docs").mkdir()
    (folder / "docs" / "a.md").write_text("# A\n\nWidgets are teal.\n")
    apps: dict[str, Any] = {}
    headers: dict[str, list[tuple[bytes, bytes]]] = {}
    for name, auth in auth_variants.items():
        sub = folder / name
        sub.mkdir()
        config = write_app(
            sub, folder / "docs", ["**/*.md"], embedder={"type": "hashing"},
            server={"auth": auth},
        )  # fmt: skip
        rag = RAG.from_config(config)
        apps[name] = create_app(rag)
        await lifespan(apps[name])
        _, key = KeyStore(rag.components.data_dir, server_secret()).create("bench", ["query"])
        headers[name] = [(b"authorization", f"Bearer {key}".encode())]
    times: dict[str, list[list[float]]] = {name: [] for name in apps}
    for _ in range(rounds):
        rows: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(200):  # warm-up
            for name, app in apps.items():
                await call(app, headers[name])
        for _ in range(requests):
            for name, app in apps.items():
                rows[name].append(await call(app, headers[name]))
        for name in apps:
            times[name].append(rows[name])
    result: dict[str, Any] = {"route": "GET /v1/models", "requests": requests, "rounds": rounds}
    for name in apps:
        result[f"{name}_p50_ms"] = round(median([percentile(r, 50) for r in times[name]]), 4)
        result[f"{name}_p99_ms"] = round(median([percentile(r, 99) for r in times[name]]), 4)
    for name in (n for n in apps if n != "off"):
        result[f"{name}_overhead_p50_ms"] = round(
            result[f"{name}_p50_ms"] - result["off_p50_ms"], 4
        )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    emit({"machine": machine(), **asyncio.run(main(args.requests, args.rounds, args.redis))})
