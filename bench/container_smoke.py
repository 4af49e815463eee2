"""Build the CPU image (Dockerfile) with podman, run it as a user would, and time it.

    python bench/container_smoke.py [--image llmops:smoke] [--reuse] [--base IMAGE]
        [--build-arg NAME=VALUE ...] [--build-volume SRC:DST[:ro] ...] [--runtime NAME]
        [--ulimit NAME=SOFT:HARD ...] [--network publish|host] [--port 18080]
        [--rounds 5] [--requests 10] [--workdir DIR] [--out results.json]

The image is built (``--reuse``: only when it is missing) from the repository with
``--base`` as its PYTHON_IMAGE and the ``--build-arg`` / ``--build-volume`` given (a pip mirror,
wheel folders mounted into the build), then started with its own entrypoint: the quickstart
baked into /app/app.yaml, served on 0.0.0.0, so API keys are on (a random LLMOPS_KEY_SECRET).
``--network publish`` maps the container's 8000 to 127.0.0.1:``--port``; ``host`` shares the
host's network (``--port`` appended to the entrypoint).

Checks: /ready answers 200 (seconds from ``podman run``, the first ingestion of datasets/guide
included); ``llmops keys create`` inside the container gives a query key; POST /query with it
answers with sources; no process of the container runs as root; ``podman healthcheck run``
says healthy (the image's HEALTHCHECK on /ready); ``podman stop`` drains it to exit status 0.
The container is stopped and removed by its id.

Baseline, measured in the same run: the same app served by ``llmops up`` from this
environment on 127.0.0.1 (keys on as well), its index in a temp folder. Query latency is the
median of ``--rounds`` alternating rounds of ``--requests`` sequential questions per side.

``--runtime`` and ``--ulimit`` go to podman where its defaults do not work (this sandbox:
crun refuses cgroups in hybrid mode, and the default RLIMIT_NOFILE/NPROC exceed what podman
may set). Prints one JSON object (also written to ``--out``); ``{"skipped": why}`` (exit 0)
without podman or a base image; exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from common import GUIDE_QUESTIONS, ROOT, emit, machine, median, stop_server, wait_ready

from llmops.config.auth import SECRET_ENV
from llmops.deploy.app import CONFIG_FILE
from llmops.deploy.app import load as deployed

CONTAINER_PORT = 8000
READY_TIMEOUT_S = 600.0


class Podman:
    """``podman`` with the global options (``--runtime``) and the ulimits a run or build needs."""

    def __init__(self, runtime: str | None, ulimits: list[str]) -> None:
        self.command = ["podman", *(["--runtime", runtime] if runtime else [])]
        self.limits = [f"--ulimit={u}" for u in ulimits]

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        done = subprocess.run(
            [*self.command, *args], capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:2])}: {done.stderr.strip()[-2000:]}")
        return done.stdout.strip()


def unavailable(podman: Podman, base: str) -> str | None:
    """Why no image can be built here, or None."""
    if shutil.which("podman") is None:
        return "podman not found (apt-get install podman)"
    try:
        podman("version", "--format", "{{.Client.Version}}")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"podman does not work: {exc}"
    if _exists(podman, base):
        return None
    try:
        podman("pull", base, timeout=300)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"base image {base} is not here and cannot be pulled: {exc}"
    return None


def _exists(podman: Podman, image: str) -> bool:
    return subprocess.run([*podman.command, "image", "exists", image]).returncode == 0


def build(podman: Podman, args: argparse.Namespace, log: Path) -> float:
    """Build the image; its output goes to ``log``. Returns the seconds it took."""
    options = [f"--build-arg=PYTHON_IMAGE={args.base}"]
    options += [f"--build-arg={a}" for a in args.build_arg]
    options += [f"--volume={v}" for v in args.build_volume]
    # docker format: the OCI image format has no HEALTHCHECK (podman would drop it)
    command = [*podman.command, "build", "--format=docker", "--network=host", *podman.limits]
    command += options
    command += ["--tag", args.image, "--file", str(ROOT / "Dockerfile"), str(ROOT)]
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text().splitlines()[-15:]
        raise RuntimeError(f"build failed (see {log}):\n" + "\n".join(tail))
    return time.perf_counter() - started


def image_facts(podman: Podman, image: str) -> dict[str, Any]:
    info = json.loads(podman("image", "inspect", image))[0]
    config = info.get("Config") or {}
    return {
        "size_mb": round(info["Size"] / 1e6),
        "user": config.get("User"),
        "image_healthcheck": (info.get("Healthcheck") or {}).get("Test"),
    }


def run_container(podman: Podman, image: str, network: str, port: int, secret: str) -> str:
    """Start the image with its own entrypoint; returns the container's id."""
    if network == "host":
        where, extra = ["--network=host"], ["--port", str(port)]
    else:
        where, extra = [f"--publish=127.0.0.1:{port}:{CONTAINER_PORT}"], []
    env = [f"--env={SECRET_ENV}={secret}"]
    return podman("run", "--detach", *podman.limits, *where, *env, image, *extra)


def wait_container_ready(podman: Podman, cid: str, port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if podman("inspect", "--format", "{{.State.Running}}", cid) != "true":
            logs = podman("logs", "--tail", "20", cid, check=False)
            raise RuntimeError(f"the container exited before /ready:\n{logs}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"/ready not 200 within {READY_TIMEOUT_S:.0f} s")


def query_key(podman: Podman, cid: str) -> str:
    """A query key made inside the container, as its user (`llmops keys create`)."""
    out = podman("exec", cid, "llmops", "keys", "create", CONFIG_FILE, "--scopes", "query")
    (key,) = [line for line in out.splitlines() if line.startswith("llmk_")]
    return key


def ask(port: int, key: str, question: str) -> tuple[float, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/query",
        data=json.dumps({"question": question}).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    return (time.perf_counter() - started) * 1000, body


def users(podman: Podman, cid: str) -> list[str]:
    """The user of each process in the container (``podman top``)."""
    return sorted(set(podman("top", cid, "user").splitlines()[1:]))


def health(podman: Podman, cid: str) -> dict[str, Any]:
    """The image's HEALTHCHECK run now: its exit status and the state podman records."""
    command = [*podman.command, "healthcheck", "run", cid]
    done = subprocess.run(command, capture_output=True, text=True)
    status = podman("inspect", "--format", "{{.State.Health.Status}}", cid)
    return {"exit_status": done.returncode, "status": status}


def stop(podman: Podman, cid: str) -> dict[str, Any]:
    """SIGTERM, the drain, then the exit status; the container is removed by its id."""
    started = time.perf_counter()
    podman("stop", "--time", "60", cid, timeout=90)
    seconds = time.perf_counter() - started
    status = int(podman("inspect", "--format", "{{.State.ExitCode}}", cid))
    podman("rm", cid)
    return {"stop_s": round(seconds, 2), "exit_status": status}


def host_server(folder: Path, port: int, secret: str) -> tuple[subprocess.Popen[bytes], float, str]:
    """The baseline: the container's config served by this environment's `llmops up`
    (loopback, keys on), its index under ``folder``. Returns the process, the seconds it took
    to be ready, and a query key."""
    raw = deployed(ROOT / "configs" / "quickstart.yaml", ROOT).raw
    for source in raw["sources"]:
        source["path"] = str(ROOT / source["path"])
    raw.update(data_dir=str(folder / "data"), prompts_dir=str(ROOT / "prompts"))
    raw["server"] = {**raw.get("server", {}), "port": port, "auth": {"enabled": True}}
    config = folder / "host.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {SECRET_ENV: secret}
    cli = [sys.executable, "-m", "llmops.cli.main"]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*cli, "up", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **env},
    )
    try:
        wait_ready(port, proc, timeout=READY_TIMEOUT_S)
    except BaseException:
        stop_server(proc)
        raise
    ready_s = time.perf_counter() - started
    keys = [*cli, "keys", "create", str(config), "--scopes", "query"]
    out = subprocess.run(
        keys, capture_output=True, text=True, check=True, env={**os.environ, **env}
    )
    (key,) = [line for line in out.stdout.splitlines() if line.startswith("llmk_")]
    return proc, ready_s, key


def latencies(targets: dict[str, tuple[int, str]], rounds: int, requests: int) -> dict[str, Any]:
    """Median query latency per target over alternating rounds of sequential questions."""
    times: dict[str, list[float]] = {name: [] for name in targets}
    for port, key in targets.values():  # warm-up, not timed
        ask(port, key, GUIDE_QUESTIONS[0])
    for _ in range(rounds):
        for name, (port, key) in targets.items():
            for i in range(requests):
                times[name].append(ask(port, key, GUIDE_QUESTIONS[i % len(GUIDE_QUESTIONS)])[0])
    medians = {name: round(median(values), 2) for name, values in times.items()}
    return {"median_ms": medians, "requests_per_side": rounds * requests}


def smoke(podman: Podman, args: argparse.Namespace, folder: Path, result: dict[str, Any]) -> None:
    """Build, run, check and stop; ``result`` gets each figure as soon as it is known."""
    result.update(image=args.image, base=args.base)
    reused = args.reuse and _exists(podman, args.image)
    build_s = None if reused else build(podman, args, folder / "build.log")
    result.update(reused=reused, build_s=build_s and round(build_s, 1))
    result.update(image_facts(podman, args.image))
    secret = secrets.token_urlsafe(32)
    started = time.perf_counter()
    cid = run_container(podman, args.image, args.network, args.port, secret)
    try:
        wait_container_ready(podman, cid, args.port)
        result["ready_s"] = round(time.perf_counter() - started, 1)
        key = checks(podman, cid, args.port, result)
        result.update(against_host(args, folder, secret, key))
        result["stop"] = stop(podman, cid)
    finally:
        podman("rm", "--force", cid, check=False)


def checks(podman: Podman, cid: str, port: int, result: dict[str, Any]) -> str:
    """The user-facing checks, recorded in ``result``; returns the query key made."""
    key = query_key(podman, cid)
    _, answer = ask(port, key, GUIDE_QUESTIONS[0])
    result["answer"] = answer["answer"][:160]
    result["sources"] = [source["source"] for source in answer["sources"]]
    result["process_users"] = users(podman, cid)
    result["healthcheck"] = health(podman, cid)
    return key


def against_host(args: argparse.Namespace, folder: Path, secret: str, key: str) -> dict[str, Any]:
    """Query latency of the container against the baseline, alternating rounds."""
    host, ready_s, host_key = host_server(folder, args.port + 1, secret)
    found: dict[str, Any] = {"host_ready_s": round(ready_s, 1)}
    try:
        targets = {"container": (args.port, key), "host": (args.port + 1, host_key)}
        query = latencies(targets, args.rounds, args.requests)
    finally:
        stop_server(host)
    medians = query["median_ms"]
    query["container_over_host"] = round(medians["container"] / medians["host"], 2)
    return {**found, "query": query}


def failures(result: dict[str, Any]) -> list[str]:
    found = []
    if not result["sources"] or not result["answer"]:
        found.append("the answer has no text or no sources")
    if "root" in result["process_users"]:
        found.append(f"a process runs as root: {result['process_users']}")
    if result["healthcheck"] != {"exit_status": 0, "status": "healthy"}:
        found.append(f"healthcheck: {result['healthcheck']}")
    if result["stop"]["exit_status"] != 0:
        found.append(f"exit status {result['stop']['exit_status']} after podman stop")
    return found


def main() -> None:
    args = parse_args()
    podman = Podman(args.runtime, args.ulimit)
    reason = unavailable(podman, args.base)
    if reason is not None:
        emit({"skipped": reason})
        return
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="container-smoke-"))
    folder.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": machine()}
    try:
        smoke(podman, args, folder, result)
        result["failures"] = failures(result)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        result["failures"] = [f"{type(exc).__name__}: {exc}"]
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    emit(result)
    if not args.workdir and not result["failures"]:
        shutil.rmtree(folder)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(1 if result["failures"] else 0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="localhost/llmops:smoke")
    parser.add_argument("--reuse", action="store_true", help="Build only if the image is missing.")
    parser.add_argument("--base", default="python:3.11-slim", help="The PYTHON_IMAGE build arg.")
    parser.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--build-volume", action="append", default=[], metavar="SRC:DST[:ro]")
    parser.add_argument("--runtime", help="podman --runtime (e.g. runc).")
    parser.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT:HARD")
    parser.add_argument("--network", choices=["publish", "host"], default="publish")
    parser.add_argument("--port", type=int, default=18080, help="Host port (baseline: +1).")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10, help="Per round and side.")
    parser.add_argument("--workdir", help="Keep the build log and the baseline's index here.")
    parser.add_argument("--out")
    return parser.parse_args()


if __name__ == "__main__":
    main()
