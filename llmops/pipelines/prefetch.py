"""Background threads on either side of the caller: ``prefetched`` computes the next items of
an iterator ahead of it, ``write_behind`` finishes its previous piece of work behind it.

Ingestion uses them to load and chunk the next batch of files, and to write the previous batch
to the indexes, while the current batch embeds: the encoder, Chroma and the tokenizer spend most
of their time in native code that releases the GIL, so the three overlap.

Prefetched items arrive in order; an exception raised while producing arrives at the position
where it happened, after the items produced before it. Leaving the ``with`` block early (an
error, or Ctrl-C in the consumer) stops the producer after the item it is working on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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


@contextmanager
def write_behind() -> Iterator[Callable[[Callable[[], None]], None]]:
    """A ``submit(work)`` that runs ``work`` on one background thread, in submission order,
    with at most one piece in flight: ``submit`` first waits for the previous piece and raises
    its error. Leaving the block waits for the last piece (its error is raised too, unless the
    block is already raising one), so nothing is still writing once the block has exited.
    """
    pool = ThreadPoolExecutor(1, thread_name_prefix="llmops-write")
    in_flight: Future[None] | None = None

    def submit(work: Callable[[], None]) -> None:
        nonlocal in_flight
        if in_flight is not None:
            in_flight.result()
        in_flight = pool.submit(work)

    try:
        yield submit
        if in_flight is not None:
            in_flight.result()
    finally:
        pool.shutdown(wait=True)
