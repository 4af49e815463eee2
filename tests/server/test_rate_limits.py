"""Rate limits hold under concurrency: 2 processes × 8 threads against one Redis bucket and
one Redis concurrency limit, and 16 threads against the in-process bucket. A token bucket of
``capacity`` refilled at ``per_s`` may admit at most ``capacity + per_s × (t_j - t_i)``
requests between any two of its own decisions i ≤ j; a double admission under a race
(litellm#4125, #39713) breaks that."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from llmops.access.limits import Decision, MemoryLimiter, RedisInFlight, RedisLimiter

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
        limiter = RedisLimiter(REDIS_URL, prefix=prefix)
        while time.time() < until:
            decision = await limiter.take("key1", CAPACITY, PER_S)
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


def in_two_processes(target: Callable[..., None], name: str) -> list[Any]:
    """Run ``target(prefix, until, results)`` in two spawned processes on one fresh Redis
    prefix (deleted afterwards); their results, joined."""
    import redis

    prefix = f"llmops-test-{name}-{uuid.uuid4().hex[:8]}"
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    until = time.time() + RUN_S + 2.0  # the spawned processes need a moment to start
    processes = [context.Process(target=target, args=(prefix, until, results)) for _ in range(2)]
    try:
        for process in processes:
            process.start()
        joined = [item for _ in processes for item in results.get(timeout=60)]
        for process in processes:
            process.join(timeout=30)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
    return joined


@pytest.mark.skipif(not redis_available(), reason="no Redis at 127.0.0.1:6379")
def test_redis_bucket_admits_no_more_than_its_limit_across_processes() -> None:
    decisions = in_two_processes(redis_process, "limits")
    admitted, bound = check_bucket(decisions)
    assert len(decisions) > 10 * admitted  # the clients really competed for the tokens
    assert admitted >= 0.95 * bound - 1  # and the limiter did not refuse what it had
    print(f"redis: {admitted} admitted of {len(decisions)}, bound {bound:.1f}")


def test_memory_bucket_admits_no_more_than_its_limit_across_threads() -> None:
    limiter = MemoryLimiter()
    out: list[tuple[float, bool]] = []
    until = time.monotonic() + RUN_S

    def hammer() -> None:
        while time.monotonic() < until:
            decision = limiter.take_now("key1", CAPACITY, PER_S)
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
    limiter = MemoryLimiter(clock=lambda: now[0])

    def take(key: str = "k") -> Decision:
        return limiter.take_now(key, 2, 1.0)

    assert [take().allowed for _ in range(3)] == [True, True, False]
    refused = take()
    assert refused.retry_after_s == pytest.approx(1.0) and refused.reset_s == pytest.approx(2.0)
    now[0] = 1.0
    assert take().allowed and not take().allowed
    assert take("other").allowed  # buckets are per key


def test_the_check_catches_a_double_admission() -> None:
    one_too_many = [(0.0, True)] * (CAPACITY + 1)
    with pytest.raises(AssertionError):
        check_bucket(one_too_many)


IN_FLIGHT_LIMIT, HOLD_S = 3, 0.02


def _in_flight_thread(prefix: str, until: float, out: list[tuple[float, float]]) -> None:
    async def hammer() -> None:
        slots = RedisInFlight(REDIS_URL, prefix=prefix)
        while time.time() < until:
            request = uuid.uuid4().hex
            if await slots.acquire("key1", IN_FLIGHT_LIMIT, request):
                start = time.time()  # inside the slot: the recorded span is within the real one
                await asyncio.sleep(HOLD_S)
                out.append((start, time.time()))
                await slots.release("key1", request)
        await slots.close()

    asyncio.run(hammer())


def in_flight_process(prefix: str, until: float, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out: list[tuple[float, float]] = []
    threads = [
        threading.Thread(target=_in_flight_thread, args=(prefix, until, out))
        for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(out)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = current = 0
    for _, step in events:  # an end sorts before a start at the same instant
        current += step
        peak = max(peak, current)
    return peak


@pytest.mark.skipif(not redis_available(), reason="no Redis at 127.0.0.1:6379")
def test_redis_concurrency_limit_holds_across_processes() -> None:
    spans = in_two_processes(in_flight_process, "inflight")
    assert len(spans) > 50  # the slots were used, and used again
    assert most_at_once(spans) == IN_FLIGHT_LIMIT  # reached, never passed
    assert most_at_once([(0.0, 2.0), (1.0, 3.0), (1.5, 1.6)]) == 3  # the check counts overlaps


@pytest.mark.skipif(not redis_available(), reason="no Redis at 127.0.0.1:6379")
def test_a_slot_never_released_is_freed_by_its_lease() -> None:
    prefix = f"llmops-test-lease-{uuid.uuid4().hex[:8]}"

    async def run() -> list[bool]:
        slots = RedisInFlight(REDIS_URL, prefix=prefix, lease_s=0.5)
        taken = [await slots.acquire("k", 1, "crashed"), await slots.acquire("k", 1, "next")]
        await asyncio.sleep(0.6)
        taken.append(await slots.acquire("k", 1, "after-lease"))
        await slots.release("k", "after-lease")
        await slots.close()
        return taken

    assert asyncio.run(run()) == [True, False, True]


def test_redis_down_admits_in_flight() -> None:
    async def run() -> bool:
        slots = RedisInFlight("redis://127.0.0.1:1/0")
        admitted = await slots.acquire("k", 1, "a") and await slots.acquire("k", 1, "b")
        await slots.release("k", "a")
        await slots.close()
        return admitted

    assert asyncio.run(run())
