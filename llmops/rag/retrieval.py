"""Searches batched across concurrent requests, searches run side by side, and maximal
marginal relevance (MMR)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from llmops.protocols import Vectors


async def all_or_cancelled(*steps: Awaitable[Any]) -> list[Any]:
    """The results of ``steps`` run side by side, like ``asyncio.gather``; but when one fails,
    the others are cancelled and awaited before its error is raised, so none is left running
    (or torn down later, outside its request) once the request has failed."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def mmr_select(query: Vectors, vectors: Vectors, k: int, lambda_: float) -> list[int]:
    """Maximal marginal relevance: indices of ``k`` rows balancing relevance and novelty.

    Each step picks the row maximising ``lambda * sim(query, row) - (1 - lambda) * max sim(row,
    already chosen)``; vectors are compared by cosine similarity.
    """
    if len(vectors) == 0:
        return []
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    q = query / max(float(np.linalg.norm(query)), 1e-12)
    relevance = unit @ q
    similarity = unit @ unit.T
    chosen = [int(np.argmax(relevance))]
    redundancy = similarity[chosen[0]].copy()
    while len(chosen) < min(k, len(vectors)):
        score = lambda_ * relevance - (1.0 - lambda_) * redundancy
        score[chosen] = -np.inf
        best = int(np.argmax(score))
        chosen.append(best)
        redundancy = np.maximum(redundancy, similarity[best])
    return chosen


K = TypeVar("K", bound=Hashable)
Q = TypeVar("Q")
R = TypeVar("R")


class Batcher(Generic[K, Q, R]):
    """Shares one call of ``run(key, queries)`` (in a worker thread) among the concurrent
    requests that ask with the same key in one event-loop turn.

    One Chroma query with 32 vectors, or one BM25 pass over 32 questions, costs far less than
    32 calls with one: each call pays a thread hand-off, locks and the library's fixed costs.
    While a batch runs, new requests gather into the next one.
    """

    def __init__(self, run: Callable[[K, list[Q]], Sequence[R]]) -> None:
        self._run = run
        self._pending: dict[K, list[tuple[Q, asyncio.Future[R]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def ask(self, key: K, query: Q) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        waiting = self._pending.setdefault(key, [])
        if not waiting:
            loop.call_soon(self._schedule_flush, key)
        waiting.append((query, future))
        return await future

    def _schedule_flush(self, key: K) -> None:
        task = asyncio.get_running_loop().create_task(self._flush(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, key: K) -> None:
        batch = self._pending.pop(key)
        try:
            found = await asyncio.to_thread(self._run, key, [q for q, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, found, strict=True):
            if not future.done():
                future.set_result(result)
