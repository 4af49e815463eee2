"""Compute the next items of an iterator on a background thread while the caller works.

Ingestion uses it to load and chunk the next batch of files while the current batch embeds:
the encoder spends most of its time in native code that releases the GIL, so the two overlap.
Items arrive in order; an exception raised while producing arrives at the position where it
happened, after the items produced before it. Leaving the ``with`` block early (an error, or
Ctrl-C in the consumer) stops the producer after the item it is working on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
POLL_S = 0.1


@dataclass
class _Failure:
    error: BaseException


class _Done:
    pass


@dataclass
class _Item(Generic[T]):
    value: T


class _Producer(Generic[T]):
    def __init__(self, items: Iterable[T], depth: int) -> None:
        self.items = items
        self.queue: queue.Queue[_Item[T] | _Failure | _Done] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="llmops-prefetch", daemon=True)

    def run(self) -> None:
        try:
            for value in self.items:
                if not self.put(_Item(value)):
                    return
            self.put(_Done())
        except BaseException as exc:  # handed to the consumer, raised there
            self.put(_Failure(exc))

    def put(self, entry: _Item[T] | _Failure | _Done) -> bool:
        """Wait for room in the queue; False when the consumer has gone."""
        while not self.stop.is_set():
            try:
                self.queue.put(entry, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def consume(self) -> Iterator[T]:
        while True:
            entry = self.queue.get()
            if isinstance(entry, _Done):
                return
            if isinstance(entry, _Failure):
                raise entry.error
            yield entry.value

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=POLL_S * 2)  # daemon: a long item finishes on its own


@contextmanager
def prefetched(items: Iterable[T], depth: int = 1) -> Iterator[Iterator[T]]:
    """``items``, produced up to ``depth`` ahead of the consumer on a background thread."""
    producer = _Producer(items, depth)
    producer.thread.start()
    try:
        yield producer.consume()
    finally:
        producer.close()
