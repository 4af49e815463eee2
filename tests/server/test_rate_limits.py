"""Rate limits hold under concurrency: 2 processes × 8 threads against one Redis bucket, and
16 threads against the in-process bucket. A token bucket of ``capacity`` refilled at ``per_s``
may admit at most ``capacity + per_s × (t_j - t_i)`` requests between any two of its own
decisions i ≤ j; a double admission under a race (litellm#4125, #39713) breaks that."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
import uuid

import pytest

from llmops.access.limits import MemoryLimiter, RedisLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"
CAPACITY, WINDOW_S = 50, 2.0  # 50 per 2 s window: a burst of 50, refilled at 25/s
PER_S = CAPACITY / WINDOW_S
RUN_S, THREADS = 3.0, 8


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _redis_thread(prefix: str, until: float, out: list[tuple[float, bool]]) -> None:
    async def hammer() -> None:
        limiter = RedisLimiter(REDIS_URL, CAPACITY, PER_S, prefix=prefix)
        while time.time() < until:
            decision = await limiter.take("key1")
            out.append((decision.at, decision.allowed))
        await limiter.close()

    asyncio.run(hammer())


def redis_process(prefix: str, until: float, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """One replica: THREADS clients, each with its own connection pool, all on one key."""
    out: list[tuple[float, bool]] = []
    threads = [
        threading.Thread(target=_redis_thread, args=(prefix, until, out)) for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(out)


def check_bucket(decisions: list[tuple[float, bool]]) -> tuple[int, float]:
    """Assert the token-bucket bound on every span between two admissions; return the
    admissions and the bound over the whole run."""
    admitted = sorted(at for at, allowed in decisions if allowed)
    assert admitted, "nothing was admitted"
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            bound = CAPACITY + PER_S * (admitted[j] - start) + 1e-6
            assert j - i + 1 <= bound, f"{j - i + 1} admitted in {admitted[j] - start:.3f}s"
    windows: dict[int, int] = {}
    for at in admitted:  # fixed 2 s windows: at most a full bucket plus one window's refill
        key = int((at - admitted[0]) // WINDOW_S)
        windows[key] = windows.get(key, 0) + 1
    assert max(windows.values()) <= CAPACITY + PER_S * WINDOW_S
    all_times = [at for at, _ in decisions]
    return len(admitted), CAPACITY + PER_S * (max(all_times) - min(all_times))


@pytest.mark.skipif(not redis_available(), reason="no Redis at 127.0.0.1:6379")
def test_redis_bucket_admits_no_more_than_its_limit_across_processes() -> None:
    import redis

    prefix = f"llmops-test-limits-{uuid.uuid4().hex[:8]}"
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    until = time.time() + RUN_S + 2.0  # the spawned processes need a moment to start
    processes = [
        context.Process(target=redis_process, args=(prefix, until, results)) for _ in range(2)
    ]
    try:
        for process in processes:
            process.start()
        decisions = [d for _ in processes for d in results.get(timeout=60)]
        for process in processes:
            process.join(timeout=30)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
    admitted, bound = check_bucket(decisions)
    assert len(decisions) > 10 * admitted  # the clients really competed for the tokens
    assert admitted >= 0.95 * bound - 1  # and the limiter did not refuse what it had
    print(f"redis: {admitted} admitted of {len(decisions)}, bound {bound:.1f}")


def test_memory_bucket_admits_no_more_than_its_limit_across_threads() -> None:
    limiter = MemoryLimiter(CAPACITY, PER_S)
    out: list[tuple[float, bool]] = []
    until = time.monotonic() + RUN_S

    def hammer() -> None:
        while time.monotonic() < until:
            decision = limiter.take_now("key1")
            out.append((decision.at, decision.allowed))

    threads = [threading.Thread(target=hammer) for _ in range(2 * THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    admitted, bound = check_bucket(out)
    assert admitted >= 0.95 * bound - 1
    print(f"memory: {admitted} admitted of {len(out)}, bound {bound:.1f}")


def test_refused_decision_says_when_to_retry() -> None:
    now = [0.0]
    limiter = MemoryLimiter(2, 1.0, clock=lambda: now[0])
    assert [limiter.take_now("k").allowed for _ in range(3)] == [True, True, False]
    refused = limiter.take_now("k")
    assert refused.retry_after_s == pytest.approx(1.0) and refused.reset_s == pytest.approx(2.0)
    now[0] = 1.0
    assert limiter.take_now("k").allowed and not limiter.take_now("k").allowed
    assert limiter.take_now("other").allowed  # buckets are per key


def test_the_check_catches_a_double_admission() -> None:
    one_too_many = [(0.0, True)] * (CAPACITY + 1)
    with pytest.raises(AssertionError):
        check_bucket(one_too_many)
