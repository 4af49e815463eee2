"""Micro-batching: concurrent prediction requests answered by one call of the model on one
worker thread. While the thread runs a batch, new requests queue; when it is free, every
waiting request (up to ``max_rows`` rows) forms the next batch, and a lone request never waits
for company. scikit-learn's per-call overhead (column checks, the transformer steps) is paid
once per batch instead of once per request."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Pending(Generic[Item, Result]):
    items: Sequence[Item]
    future: asyncio.Future[list[Result]]
    loop: asyncio.AbstractEventLoop


class MicroBatcher(Generic[Item, Result]):
    """``await submit(items)`` → ``run(all waiting items)`` on one thread, results split back
    per request in order. ``run`` gets a list and returns one result per item."""

    def __init__(
        self,
        run: Callable[[list[Item]], list[Result]],
        max_rows: int,
        setup: Callable[[], None] | None = None,
    ) -> None:
        """``setup`` runs first on the worker thread (per-thread settings of the model's
        libraries)."""
        self.run, self.max_rows, self.setup = run, max_rows, setup
        self._waiting: deque[_Pending[Item, Result]] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="llmops-predict", daemon=True)
            self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            with self._wake:
                self._stopping = True
                self._wake.notify()
            self._thread.join(timeout=30)
            self._thread = None

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        loop = asyncio.get_running_loop()
        pending = _Pending[Item, Result](items, loop.create_future(), loop)
        with self._wake:
            self._waiting.append(pending)
            self._wake.notify()
        return await pending.future

    def _loop(self) -> None:
        if self.setup is not None:
            self.setup()
        while True:
            with self._wake:
                while not self._waiting and not self._stopping:
                    self._wake.wait()
                if self._stopping and not self._waiting:
                    return
                batch = self._take()
            self._answer(batch)

    def _take(self) -> list[_Pending[Item, Result]]:
        """Waiting requests up to ``max_rows`` rows (always at least one request)."""
        batch = [self._waiting.popleft()]
        rows = len(batch[0].items)
        while self._waiting and rows + len(self._waiting[0].items) <= self.max_rows:
            rows += len(self._waiting[0].items)
            batch.append(self._waiting.popleft())
        return batch

    def _answer(self, batch: list[_Pending[Item, Result]]) -> None:
        items = [item for pending in batch for item in pending.items]
        try:
            results = self.run(items)
        except Exception as exc:
            for pending in batch:
                pending.loop.call_soon_threadsafe(_fail, pending.future, exc)
            return
        start = 0
        for pending in batch:
            part = results[start : start + len(pending.items)]
            start += len(pending.items)
            pending.loop.call_soon_threadsafe(_settle, pending.future, part)


def _settle(future: asyncio.Future[list[Result]], value: list[Result]) -> None:
    if not future.done():  # the request may have been cancelled meanwhile
        future.set_result(value)


def _fail(future: asyncio.Future[list[Result]], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
