"""Helpers shared by the benchmark scripts: dataset lookup, temp apps, timing, JSON output."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from llmops.deps import offline_environment
from llmops.rag.embedders.onnx_int8 import cpu_flags, int8_mode

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LLMOPS_SHARED", ROOT.parent / "shared")) / "datasets"

offline_environment()


GUIDE_QUESTIONS = [
    "How do I install llmops?",
    "How are chunk ids made stable?",
    "Which loaders are there?",
    "How do I filter by source?",
    "What is MMR?",
    "How are secrets passed to the config?",
]
"""Questions about the project's own guide (datasets/guide), for serving benchmarks."""


def dataset(name: str) -> Path:
    """The shared dataset folder, or exit cleanly (status 0) with a JSON note if it is absent."""
    path = SHARED / name
    if not path.exists():
        emit({"skipped": f"dataset not found: {path}"})
        sys.exit(0)
    return path


def write_app(folder: Path, source: Path, include: list[str], **sections: Any) -> Path:
    data: dict[str, Any] = {
        "name": "bench",
        "data_dir": str(folder / "data"),
        "sources": [{"path": str(source), "include": include}],
        **sections,
    }
    config = folder / "bench.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)


SIMD_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8")


def cpu() -> dict[str, Any]:
    """The CPU model and the SIMD flags that decide model speed (Linux /proc/cpuinfo)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    seen = cpu_flags()  # what llmops acts on: /proc/cpuinfo, or bench/avx2_only.py's mask
    return {
        "model": fields.get("model name"),
        "flags": [f for f in SIMD_FLAGS if f in flags],
        "flags_seen": [f for f in SIMD_FLAGS if f in seen],
        "int8_weights": int8_mode(seen).name,
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "platform": sys.platform,
    }


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2))


async def _one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes
) -> float:
    started = time.perf_counter()
    writer.write(
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n".encode()
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace"))
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)
    return (time.perf_counter() - started) * 1000


async def load(
    port: int, path: str, bodies: list[bytes], concurrency: int, total: int
) -> dict[str, float]:
    """POST ``total`` requests (cycling through ``bodies``) over ``concurrency`` keep-alive
    connections of a minimal HTTP/1.1 client, so the load generator costs little CPU."""
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in counter:
            latencies.append(await _one(reader, writer, path, bodies[i % len(bodies)]))
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": total,
        "throughput_rps": round(total / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
    }


def wait_ready(
    port: int, proc: subprocess.Popen[bytes], path: str = "/ready", timeout: float = 120
) -> None:
    """Wait until GET ``path`` answers 200, or fail if the server exits or takes too long."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited early")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("server not ready in time")


def median_levels(rounds: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    """Per load level, the median of each figure over the rounds."""
    return [
        {key: round(median([r[i][key] for r in rounds]), 2) for key in rounds[0][i]}
        for i in range(len(rounds[0]))
    ]


def cpu_seconds(group: int) -> float:
    """User + system CPU time the live processes of process group ``group`` have used so far
    (Linux /proc): a server and its worker processes."""
    total = 0
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def llmops_up(config: Path, port: int, workers: int = 1) -> list[str]:
    """The command serving an already indexed app on ``port``."""
    cli = [sys.executable, "-m", "llmops.cli.main", "up", str(config), "--no-ingest"]
    return [*cli, "--port", str(port), "--workers", str(workers)]


def start_server(
    command: list[str],
    port: int,
    ready: str = "/ready",
    root: Path = ROOT,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server in its own process group (run from ``root``, the repository root by
    default, which is on its import path; ``env`` added to this environment) and wait until
    GET ``ready`` answers 200."""
    proc = subprocess.Popen(
        command,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(root)},
    )
    try:
        wait_ready(port, proc, ready)
    except BaseException:
        stop_server(proc)
        raise
    return proc


FAKE_BACKEND = """
import asyncio, random, sys, uvicorn
from tests.stubs.openai_server import Behaviour, make_app

class Jittered(Behaviour):  # +-20 %: clients drift apart instead of arriving in waves
    async def stall_or_fail(self) -> bool:
        await asyncio.sleep(self.delay_s * random.uniform(0.8, 1.2))
        return False

behaviour = Jittered(models=("fake",), delay_s=float(sys.argv[2]) / 1000)
uvicorn.run(make_app(behaviour), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning", access_log=False)
"""


def start_fake_backend(port: int, delay_ms: float) -> subprocess.Popen[bytes]:
    """The OpenAI-compatible stub of the tests (model ``fake``), answering after ``delay_ms``
    (+-20 %)."""
    command = [sys.executable, "-c", FAKE_BACKEND, str(port), str(delay_ms)]
    return start_server(command, port, "/health")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group."""
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
