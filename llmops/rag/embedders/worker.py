"""Run an embedder on one dedicated thread that owns the model.

Measured on 2 cores: torch encodes a short query in about 12 ms on the one thread that ever
ran it, but about 20 ms when a second thread also runs torch (each thread gets its own OpenMP
team and they compete). So every model call — loading, query batches, document batches — runs
on this thread, fed by queues:

- queries (async) have priority: all queries waiting when the thread is free form one batch
  (a batch of 32 short queries costs a fraction per query of encoding them one by one), and a
  lone query never waits for company;
- document batches from ingestion are cut into slices of similar length, so a query waits at
  most one slice while an ingestion runs.

The model loads in ``start()`` (a server loads it before it accepts requests) or, after
``start(load=False)``, at its first use: an ingestion that finds nothing changed never loads it
(loading was ≈ 85 % of the CPU time of such a run: docs/benchmarks.md). The first use may come
from any thread (the prefetch thread counting tokens, the ingesting thread embedding); ``load``
serialises them so the model loads once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np

from llmops.protocols import Embedder, Vectors

T = TypeVar("T")
# Texts per encoder-thread job during ingestion: a query waits at most one slice. Throughput
# on 2 cores was flat from 16 to 128 for every backend (the model's own batches are 4-8 texts),
# so 32 halves that wait (≈0.5-0.8 s of 256-token chunks) for nothing.
SLICE = 32


@dataclass
class _Query:
    text: str
    future: asyncio.Future[Vectors]
    loop: asyncio.AbstractEventLoop


class EncoderThread:
    """An ``Embedder`` whose model calls all run on one thread; adds ``encode_query``."""

    def __init__(self, embedder: Embedder, max_query_batch: int = 64) -> None:
        self.inner = embedder
        self._max_batch = max_query_batch
        self._queries: deque[_Query] = deque()
        self._jobs: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._load_lock = threading.Lock()
        self._loaded = False

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    @property
    def dimension(self) -> int:
        self.load()
        return self.inner.dimension

    @property
    def max_seq_length(self) -> int:
        self.load()
        return self.inner.max_seq_length

    @property
    def loaded(self) -> bool:
        """Whether the model has loaded (in ``start()``, or at its first use)."""
        return self._loaded

    def start(self, load: bool = True) -> None:
        """Start the encoder thread and load the model on it; ``load=False`` leaves the model
        to its first use (an embedding, a token count, ``dimension``) or to ``load()``."""
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="llmops-encoder", daemon=True)
            self._thread.start()
        if load:
            self.load()

    def load(self) -> None:
        """Load the model on the encoder thread, once: concurrent first uses wait for the one
        load (never call it from the encoder thread itself: it would wait for itself)."""
        if self._loaded:
            return
        with self._load_lock:
            if not self._loaded:
                self.run(self.inner.start)
                self._loaded = True

    def close(self) -> None:
        if self._thread is None:
            return
        with self._load_lock:
            self.run(self.inner.close)
            self._loaded = False
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=30)
        self._thread = None

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Queue ``fn`` for the encoder thread (other torch models, such as a reranker, run
        there too, so they never compete with the embedder for cores)."""
        if self._thread is None:
            raise RuntimeError("encoder not started: call start() first")
        future: Future[T] = Future()
        with self._wake:
            self._jobs.append((fn, future))
            self._wake.notify()
        return future

    def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the encoder thread and wait for its result."""
        return self.submit(fn).result()

    async def encode_query(self, text: str) -> Vectors:
        """The query's vector (1-D), batched with concurrent queries."""
        if self._thread is None:
            raise RuntimeError("encoder not started: call start() first")
        if not self._loaded:  # off the event loop: loading takes seconds
            await asyncio.to_thread(self.load)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Vectors] = loop.create_future()
        with self._wake:
            self._queries.append(_Query(text, future, loop))
            self._wake.notify()
        return await future

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        self.load()
        return self.run(lambda: self.inner.embed_queries(texts))

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        """Embed in slices of similar length; queries may run between slices."""
        self.load()
        if not texts:
            return self.run(lambda: self.inner.embed_documents([]))
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        out: Vectors | None = None
        for start in range(0, len(order), SLICE):
            picked = order[start : start + SLICE]
            part = self.run(partial(self.inner.embed_documents, [texts[i] for i in picked]))
            if out is None:
                out = np.zeros((len(texts), part.shape[1]), dtype=np.float32)
            out[picked] = part
        assert out is not None
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        self.load()  # the tokenizer comes with the model
        return self.inner.count_tokens(texts)  # tokenizer only: no torch, any thread

    # the encoder thread ----------------------------------------------------------------------
    def _next(self) -> list[_Query] | tuple[Callable[[], Any], Future[Any]] | None:
        with self._wake:
            while not (self._queries or self._jobs or self._stopping):
                self._wake.wait()
            if self._queries:
                count = min(len(self._queries), self._max_batch)
                return [self._queries.popleft() for _ in range(count)]
            if self._jobs:
                return self._jobs.popleft()
            return None

    def _run(self) -> None:
        while (work := self._next()) is not None:
            if isinstance(work, list):
                self._encode_queries(work)
            else:
                fn, future = work
                try:
                    future.set_result(fn())
                except BaseException as exc:  # handed to the waiting caller
                    future.set_exception(exc)

    def _encode_queries(self, batch: list[_Query]) -> None:
        try:
            vectors = self.inner.embed_queries([q.text for q in batch])
        except Exception as exc:
            for q in batch:
                q.loop.call_soon_threadsafe(_settle, q.future, None, exc)
            return
        for q, vector in zip(batch, vectors, strict=True):
            q.loop.call_soon_threadsafe(_settle, q.future, vector, None)


def _settle(
    future: asyncio.Future[Vectors], value: Vectors | None, exc: BaseException | None
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert value is not None
        future.set_result(value)
