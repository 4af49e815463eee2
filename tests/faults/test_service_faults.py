"""Service faults, each seen from the outside: Redis killed (or frozen) under live traffic and
brought back on the same port, an LLM backend that flaps, the MLflow server down during an eval
run. Each ends in an answer or a clear error (never a 500 or a hang), recovers by itself, and
loses nothing the design keeps."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.errors import BackendError
from llmops.generation.breaker import CircuitBreaker
from llmops.server import create_app
from tests.conftest import HASHING, ConfigWriter
from tests.server.test_auth import bearer, secret, serve
from tests.stubs.openai_server import Behaviour
from tests.stubs.openai_server import serve as serve_stub
from tests.up_server import free_port

__all__ = ["secret"]  # the autouse fixture that sets the server secret (auth tests)

QUESTION = {"question": "How do I restore a backup?"}
REDIS = shutil.which("redis-server")


class RedisServer:
    """A private redis-server that a test can kill, freeze and start again on the same port;
    append-only with fsync always, so what was written before a kill is there after it."""

    def __init__(self, folder: Path) -> None:
        if REDIS is None:
            pytest.fail("redis-server is not installed (.ci/run installs it)")
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            str(REDIS), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 10
        while not self.up():
            assert time.time() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def up(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None
        assert not self.up(), "Redis still answers after the kill"

    def freeze(self, frozen: bool) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGCONT)
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.close()


def _client(config: Path) -> Iterator[TestClient]:
    rag = RAG.from_config(config)
    rag.start()
    rag.ingest()
    with TestClient(create_app(rag)) as client:
        yield client


def _bandit(url: str) -> dict[str, Any]:
    return {
        "name": "redis-fault",
        "strategy": "thompson",
        "variants": {"control": {}, "wide": {"retrieval": {"top_k": 6}}},
        "redis_url": url,
    }


def _timed_query(client: TestClient, limit_s: float) -> tuple[str, str]:
    """One /query that must be answered (200) within ``limit_s``; its request id and variant."""
    started = time.perf_counter()
    reply = client.post("/query", json=QUESTION)
    elapsed = time.perf_counter() - started
    assert reply.status_code == 200, reply.text
    assert elapsed < limit_s, f"{elapsed:.2f}s"
    return reply.headers["x-request-id"], reply.json()["variant"]


def _feedback(client: TestClient, request_id: str) -> Any:
    return client.post("/feedback", json={"request_id": request_id, "thumbs": "up"})


def test_redis_killed_mid_traffic_keeps_routing_and_replays_when_back(
    write_config: ConfigWriter, redis_server: RedisServer
) -> None:
    config = write_config(embedder=HASHING, experiment=_bandit(redis_server.url))
    for client in _client(config):
        before = [_timed_query(client, 5.0) for _ in range(6)]
        assert all(_feedback(client, rid).status_code == 200 for rid, _ in before[:3])

        redis_server.kill()
        during = [_timed_query(client, 3.0) for _ in range(8)]
        assert not redis_server.up()  # really down while those were served
        report = client.get("/experiments").json()
        assert report["state"]["available"] is False
        assert "ConnectionError" in report["state"]["error"]
        assert report["state"]["pending_writes"] >= 8
        # feedback for a request assigned during the outage is kept here ...
        assert all(_feedback(client, rid).status_code == 200 for rid, _ in during[:4])
        # ... feedback for one only Redis knows is refused with the reason, not lost silently
        refused = _feedback(client, before[3][0])
        assert refused.status_code == 503, refused.text
        assert "state store (redis) is unreachable" in refused.json()["detail"]
        assert "send it again" in refused.json()["detail"]

        redis_server.start()  # same port, no restart of the app
        time.sleep(1.1)  # the store is tried again at most every second
        after = [_timed_query(client, 5.0) for _ in range(4)]
        assert _feedback(client, before[3][0]).status_code == 200  # sent again: recorded
        assert _feedback(client, during[4][0]).status_code == 200  # assigned while down
        report = client.get("/experiments").json()
        state = report["state"]
        assert state["available"] is True and state["pending_writes"] == 0, state
        assert state["outages"] == 1 and state["refused_calls"] == 1
        assert state["dropped_writes"] == 0
        served = before + during + after
        variants = report["variants"]
        assert sum(v["requests"] for v in variants.values()) == len(served)
        assert sum(v["rewards"] for v in variants.values()) == 3 + 4 + 2
        for name, figures in variants.items():
            assert figures["requests"] == sum(1 for _, v in served if v == name)
    # what the report read comes from Redis itself, not from this process
    stored = redis.Redis.from_url(redis_server.url, decode_responses=True)
    pulls = sum(
        int(stored.hget(f"llmops:routing:redis-fault:arm:{arm}", "pulls") or 0)
        for arm in ("control", "wide")
    )
    stored.close()
    assert pulls == 18


@pytest.mark.slow
def test_a_frozen_redis_costs_at_most_the_socket_timeout(
    write_config: ConfigWriter, redis_server: RedisServer
) -> None:
    """SIGSTOP: connections open but no reply. Without socket timeouts this hung for ever."""
    config = write_config(embedder=HASHING, experiment=_bandit(redis_server.url))
    for client in _client(config):
        _timed_query(client, 5.0)
        redis_server.freeze(True)
        try:
            started = time.perf_counter()
            answered = [_timed_query(client, 4.0) for _ in range(6)]
            elapsed = time.perf_counter() - started
            assert not redis_server.up()
            # the first pays the 2 s timeout; the next ones within retry_s do not wait
            assert elapsed < 7.0 and len(answered) == 6
            assert client.get("/experiments").json()["state"]["available"] is False
        finally:
            redis_server.freeze(False)
        time.sleep(1.1)
        _timed_query(client, 5.0)
        state = client.get("/experiments").json()["state"]
        assert state["available"] is True and state["pending_writes"] == 0
        assert (
            sum(v["requests"] for v in client.get("/experiments").json()["variants"].values()) == 8
        )


def test_redis_limiter_admits_while_down_and_limits_again_when_back(
    write_config: ConfigWriter, redis_server: RedisServer
) -> None:
    """The documented policy of ``llmops.access.limits``: the limiter protects capacity, it is
    not the auth check, so a Redis outage admits (logged) and the limit holds again after."""
    auth = {
        "enabled": True,
        "cache_ttl_s": 60,
        "limits": {"requests_per_minute": 3},
        "limiter": "redis",
        "redis_url": redis_server.url,
    }
    config = write_config(embedder=HASHING, server={"auth": auth})
    for client, keys in serve(config):
        _, key = keys.create("steady", ["query"])
        codes = [client.post("/query", json=QUESTION, headers=bearer(key)).status_code]
        codes += [client.post("/query", json=QUESTION, headers=bearer(key)).status_code]
        assert codes == [200, 200]
        redis_server.kill()
        down = [client.post("/query", json=QUESTION, headers=bearer(key)) for _ in range(5)]
        assert not redis_server.up()
        assert [r.status_code for r in down] == [200] * 5  # admitted, never 500
        redis_server.start()
        back = [client.post("/query", json=QUESTION, headers=bearer(key)) for _ in range(2)]
        # the bucket survived in Redis (1 token left of 3): one more, then 429 again
        assert [r.status_code for r in back] == [200, 429], [r.text for r in back]


@pytest.mark.slow
def test_a_frozen_redis_limiter_costs_each_request_at_most_its_timeouts(
    write_config: ConfigWriter, redis_server: RedisServer
) -> None:
    """SIGSTOP with the limiter, concurrency and token quota all in Redis: each request waits
    at most REDIS_TIMEOUT_S per Redis call (quota, bucket, slot, release, charge), then is
    admitted; without socket timeouts it hung for ever."""
    from llmops.access.limits import REDIS_TIMEOUT_S

    auth = {
        "enabled": True,
        "cache_ttl_s": 60,
        "limits": {"requests_per_minute": 100, "concurrent": 4, "tokens_per_day": 10**6},
        "limiter": "redis",
        "redis_url": redis_server.url,
    }
    config = write_config(embedder=HASHING, server={"auth": auth})
    for client, keys in serve(config):
        _, key = keys.create("steady", ["query"])
        assert client.post("/query", json=QUESTION, headers=bearer(key)).status_code == 200
        redis_server.freeze(True)
        try:
            started = time.perf_counter()
            frozen = [client.post("/query", json=QUESTION, headers=bearer(key)) for _ in range(2)]
            elapsed = time.perf_counter() - started
            assert not redis_server.up()
        finally:
            redis_server.freeze(False)
        assert [r.status_code for r in frozen] == [200, 200]
        assert elapsed < 2 * (5 * REDIS_TIMEOUT_S + 1.0)
        assert client.post("/query", json=QUESTION, headers=bearer(key)).status_code == 200


# the LLM backend flapping ------------------------------------------------------------------
class Flapping(Behaviour):
    """Every other chat request fails with 503 (a backend restarting behind a balancer)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.failed = 0

    async def stall_or_fail(self) -> bool:
        self.calls += 1
        if self.calls % 2 == 0:
            self.failed += 1
            return True
        return False


def _flapping_config(write_config: ConfigWriter, url: str, fallback: bool) -> Path:
    generator = {"type": "openai_compat", "base_url": url, "model": "tiny", "max_retries": 0}
    return write_config(
        embedder=HASHING,
        generator=generator,
        fallbacks=[{"type": "extractive", "min_score": 0.0}] if fallback else [],
        server={"request_timeout_s": 2.0},
    )


def _steady_stream(client: TestClient, count: int) -> list[tuple[int, dict[str, Any]]]:
    """``count`` requests from 4 concurrent clients: (status, body) of each."""

    def one(_: int) -> tuple[int, dict[str, Any]]:
        reply = client.post("/query", json=QUESTION)
        return reply.status_code, reply.json()

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(count)))


def _backend_errors(client: TestClient) -> float:
    lines = [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("llmops_errors_total") and 'kind="BackendError"' in line
    ]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_a_flapping_backend_with_a_fallback_answers_every_request(
    write_config: ConfigWriter,
) -> None:
    behaviour = Flapping()
    with serve_stub(behaviour) as url:
        for client in _client(_flapping_config(write_config, url, fallback=True)):
            replies = _steady_stream(client, 40)
            errors = _backend_errors(client)
    assert behaviour.calls == 40 and behaviour.failed == 20  # the backend really flapped
    assert [status for status, _ in replies] == [200] * 40  # no 5xx at all
    served_by = Counter(body["generator"] for _, body in replies)
    assert served_by["extractive"] == behaviour.failed
    assert sum(served_by.values()) - served_by["extractive"] == 40 - behaviour.failed
    assert all(
        "openai_compat" in name or "tiny" in name for name in served_by if name != "extractive"
    ), served_by
    assert errors == behaviour.failed  # every failure counted, none twice


def test_a_flapping_backend_without_a_fallback_is_503_with_the_reason(
    write_config: ConfigWriter,
) -> None:
    behaviour = Flapping()
    with serve_stub(behaviour) as url:
        for client in _client(_flapping_config(write_config, url, fallback=False)):
            replies = _steady_stream(client, 30)
            errors = _backend_errors(client)
    assert behaviour.failed == 15
    statuses = Counter(status for status, _ in replies)
    assert statuses == {200: 15, 503: 15}, statuses
    for status, body in replies:
        if status == 503:
            assert "HTTP 503" in body["detail"], body
    assert errors == 15


# the MLflow server down during an eval run -------------------------------------------------
class MlflowServer:
    """A real ``mlflow server`` (SQLite store in ``folder``) that can be stopped and started
    again on the same port; stopped by its process group (its workers outlive a SIGTERM)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
            "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
            "--artifacts-destination", str(self.folder / "server-artifacts"),
        ]  # fmt: skip
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        with (self.folder / "server.log").open("a") as log:
            self.process = subprocess.Popen(
                command, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.time() + 120
        while not self.up():
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError((self.folder / "server.log").read_text()[-3000:])
            time.sleep(0.5)

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        self.process = None


@pytest.mark.slow
@pytest.mark.integration
def test_mlflow_down_during_an_eval_run_keeps_the_results_and_logs_them_later(
    tmp_path: Path, write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    from typer.testing import CliRunner

    from llmops.cli.main import app
    from llmops.evaluation.tracking import PENDING
    from llmops.pipelines import eval_run
    from tests.eval_suite_data import write_suite
    from tests.integration.test_eval_mlflow import _check_run, _run_id

    server = MlflowServer(tmp_path)
    server.start()
    finish = eval_run.finish

    def finish_then_kill(*args: Any) -> Any:  # the server dies after answering, before logging
        result = finish(*args)
        server.stop()
        return result

    monkeypatch.setattr(eval_run, "finish", finish_then_kill)
    runner = CliRunner()
    suite = write_suite(tmp_path, write_config(embedder=HASHING))
    try:
        started = time.perf_counter()
        ran = runner.invoke(app, ["eval", "run", str(suite), "--tracking-uri", server.url])
        elapsed = time.perf_counter() - started
        assert not server.up()  # it really was down when the run logged
        assert ran.exit_code == 0, ran.output  # the gates passed on the local results
        assert "MLflow tracking failed" in ran.output and "llmops eval log" in ran.output
        assert elapsed < 60, elapsed  # bounded retries, not MLflow's default minutes
        (run_dir,) = (tmp_path / "results").iterdir()
        assert {"summary.json", "report.md", "samples-baseline.jsonl", PENDING} <= {
            p.name for p in run_dir.iterdir()
        }
        still_down = runner.invoke(app, ["eval", "log", str(run_dir)])
        assert still_down.exit_code == 1 and (run_dir / PENDING).exists()

        server.start()  # same port, same store
        logged = runner.invoke(app, ["eval", "log", str(run_dir)])
        assert logged.exit_code == 0, logged.output
        assert not (run_dir / PENDING).exists()
        client = mlflow.MlflowClient(tracking_uri=server.url)
        _check_run(client, _run_id(logged.output))
        again = runner.invoke(app, ["eval", "log", str(run_dir)])
        assert again.exit_code == 1 and "nothing to log" in again.output
    finally:
        server.stop()


def test_the_circuit_breaker_opens_probes_and_closes() -> None:
    now = [0.0]
    breaker = CircuitBreaker("stub", failures=2, open_s=5.0, clock=lambda: now[0])
    down = BackendError("stub", "HTTP 503: restarting", retryable=True)
    for _ in range(2):
        assert breaker.admit() is False
        breaker.record(down, probe=False)
    assert breaker.state == "open" and breaker.opened == 1
    with pytest.raises(BackendError, match=r"circuit open after 2 failed .*HTTP 503.*in 5.0s"):
        breaker.admit()
    now[0] = 5.0
    assert breaker.state == "half_open" and breaker.admit() is True  # the one probe
    with pytest.raises(BackendError, match="circuit open"):
        breaker.admit()  # only one probe at a time
    breaker.record(down, probe=True)  # the probe failed: open again, for another open_s
    assert breaker.state == "open" and breaker.opened == 2
    now[0] = 10.0
    assert breaker.admit() is True
    breaker.record(None, probe=True)
    assert breaker.state == "closed" and breaker.admit() is False
    for _ in range(5):  # the request's fault (a 400) never opens it
        breaker.record(BackendError("stub", "HTTP 400: bad request"), probe=False)
    assert breaker.state == "closed"


def test_with_a_breaker_a_down_backend_is_not_called_until_a_probe_finds_it_back(
    write_config: ConfigWriter,
) -> None:
    behaviour = Behaviour()
    behaviour.fail_times, behaviour.fail_status = 1000, 503
    with serve_stub(behaviour) as url:
        # open long enough that the ten requests never see a probe, even on a slowed machine
        generator = {
            "type": "openai_compat", "base_url": url, "model": "tiny", "max_retries": 0,
            "breaker_failures": 3, "breaker_open_s": 3.0,
        }  # fmt: skip
        config = write_config(
            embedder=HASHING,
            generator=generator,
            fallbacks=[{"type": "extractive", "min_score": 0.0}],
        )
        for client in _client(config):
            down = [client.post("/query", json=QUESTION) for _ in range(10)]
            assert [r.status_code for r in down] == [200] * 10
            assert {r.json()["generator"] for r in down} == {"extractive"}
            assert len(behaviour.requests) == 3  # then the circuit opened: no more calls
            behaviour.fail_times = 0  # the backend is back
            time.sleep(3.1)
            back = [client.post("/query", json=QUESTION).json()["generator"] for _ in range(5)]
            assert "extractive" not in back and len(behaviour.requests) == 3 + 5


def test_writes_past_the_bound_are_dropped_and_counted() -> None:
    """An outage longer than ``max_pending`` writes keeps the newest bound, counts the rest."""
    import asyncio

    from llmops.routing.resilient import ResilientState, StateUnavailable

    class Down:
        calls = 0

        def __getattr__(self, name: str) -> Any:
            async def refuse(*args: Any) -> None:
                Down.calls += 1
                raise ConnectionError("refused")

            return refuse

    async def run() -> dict[str, Any]:
        state = ResilientState(Down(), (ConnectionError,), retry_s=60, max_pending=3)  # type: ignore[arg-type]
        for _ in range(5):
            await state.add_pull("e", "a")
        with pytest.raises(StateUnavailable, match="feedback for request 'r1' was not recorded"):
            await state.reward("e", "r1", 1.0)
        assert (await state.stats("e"))["a"].pulls == 3
        return state.health()

    health = asyncio.run(run())
    assert Down.calls == 1  # retried at most every retry_s: one call reached the store
    assert health["pending_writes"] == 3 and health["dropped_writes"] == 2
    assert health["available"] is False and health["refused_calls"] == 1
