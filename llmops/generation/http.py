"""HTTP transport for model servers: one pooled client, a concurrency limit, timeouts, retries
with jittered exponential backoff on 429 / 5xx / connection errors within the request's
deadline, and streaming reads that turn a stalled or cut-off stream into a ``BackendError``.
What aiohttp raises is said in words (one table, ``describe``), never as a repr."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from opentelemetry import trace

from llmops import tracing
from llmops.deps import require
from llmops.errors import BackendError
from llmops.generation.breaker import CircuitBreaker
from llmops.generation.sampling import HttpBackendConfig, RetryConfig

T = TypeVar("T")
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


async def with_retries(
    name: str, call: Callable[[], Awaitable[T]], config: RetryConfig, deadline: float | None
) -> T:
    """Await ``call()``; on a retryable ``BackendError`` wait and try again, up to
    ``max_retries`` times (delays ``backoff_s``, 2×, 4× ... with jitter). ``deadline``
    (``time.monotonic()`` seconds) bounds every attempt and wait together: an attempt gets
    only the time left, and no retry starts that could not begin before it."""
    attempt = 0
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise BackendError(name, f"the request's deadline passed after {attempt} attempts")
        try:
            async with asyncio.timeout(left) as limit:
                return await call()
        except TimeoutError:
            if not limit.expired():
                raise
            raise BackendError(
                name, f"no answer before the request's deadline (attempt {attempt + 1})"
            ) from None
        except BackendError as exc:
            if not exc.retryable or attempt >= config.max_retries:
                raise
            delay = config.backoff_s * 2**attempt * (0.5 + random.random() / 2)
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise BackendError(
                    name, f"{exc.reason}; no time left to retry before the request's deadline"
                ) from None
            # the generator's span (llmops.generation.traced) shows each retry and why
            retry: tracing.Attributes = {"llmops.attempt": attempt + 1, "llmops.reason": exc.reason}
            trace.get_current_span().add_event("retry", retry)
        attempt += 1
        await asyncio.sleep(delay)


@cache
def _aiohttp() -> Any:
    """The aiohttp module, imported once (``require`` per request shows in profiles)."""
    return require("aiohttp", "llm")


class HttpBackend:
    """The connection to one model server, named ``name`` in every error it raises.

    aiohttp rather than httpx: measured here, httpx's connection pool costs about 2.6 ms of CPU
    per request at 32 concurrent requests (its pool scans every connection for each request),
    aiohttp about 0.12 ms — the difference between a gateway that adds 1 ms and one that adds
    40 ms under load on 2 cores.
    """

    def __init__(self, name: str, config: HttpBackendConfig, base_url: str | None = None) -> None:
        self.name = name
        self.config = config
        self.base_url = (base_url or config.base_url).rstrip("/") + "/"
        self._session: Any = None
        self._slots: asyncio.Semaphore | None = None
        self.breaker = (
            None
            if config.breaker_failures is None
            else CircuitBreaker(name, config.breaker_failures, config.breaker_open_s)
        )

    async def start(self) -> None:
        aiohttp = _aiohttp()
        key = self.config.api_key
        timeout = self.config.timeout_s
        self._session = aiohttp.ClientSession(
            headers={"authorization": f"Bearer {key}"} if key else {},
            timeout=aiohttp.ClientTimeout(sock_connect=timeout, sock_read=timeout),
            connector=aiohttp.TCPConnector(limit=self.config.max_concurrency),
            read_bufsize=2**20,  # one SSE line may be large (a long tool call)
        )
        self._slots = asyncio.Semaphore(self.config.max_concurrency)

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _ready(self) -> asyncio.Semaphore:
        if self._session is None or self._slots is None:
            raise BackendError(self.name, "generator not started")
        return self._slots

    async def get_json(self, path: str) -> Any:
        """GET without retries (model lists)."""
        self._ready()
        return (await self._request("GET", path)).body

    async def ping(self, path: str) -> None:
        """GET without retries; raises ``BackendError`` unless the answer is 200 (health)."""
        self._ready()
        await self._request("GET", path, decode=False)

    async def post_json(
        self, path: str, body: dict[str, Any], deadline: float | None = None
    ) -> Any:
        """POST ``body``, retrying transient failures until ``deadline`` (see
        ``with_retries``); returns the decoded JSON reply."""
        reply, _ = await self.post_json_with_headers(path, body, deadline)
        return reply

    async def post_json_with_headers(
        self, path: str, body: dict[str, Any], deadline: float | None = None
    ) -> tuple[Any, Mapping[str, str]]:
        """``post_json``, plus the reply's headers (TGI counts prompt tokens in one)."""
        slots = self._ready()

        async def once() -> tuple[Any, Mapping[str, str]]:
            reply = await self._request("POST", path, body)
            return reply.body, reply.headers

        async with slots:
            return await self._guarded(with_retries(self.name, once, self.config, deadline))

    async def _guarded(self, call: Awaitable[T]) -> T:
        """``call`` through the circuit breaker, when there is one (it may refuse at once)."""
        if self.breaker is None:
            return await call
        self.breaker.name = self.name  # a generator may rename its backend after start
        try:
            probe = self.breaker.admit()
        except BackendError:
            if asyncio.iscoroutine(call):
                call.close()  # never awaited: no "coroutine was never awaited" warning
            raise
        try:
            result = await call
        except BackendError as exc:
            self.breaker.record(exc, probe)
            raise
        except BaseException:
            self.breaker.release(probe)
            raise
        self.breaker.record(None, probe)
        return result

    async def stream_lines(
        self, path: str, body: dict[str, Any], deadline: float | None = None
    ) -> AsyncGenerator[str, None]:
        """POST ``body`` and yield the reply's lines as they arrive. Opening the stream is
        retried like ``post_json`` (``deadline`` bounds the time to the first byte); once
        lines flow, a stall of ``timeout_s`` or a cut raises ``BackendError``."""
        slots = self._ready()
        aiohttp = _aiohttp()

        async def open_stream() -> Any:
            return await self._open("POST", path, body)

        async with slots:
            response = await self._guarded(
                with_retries(self.name, open_stream, self.config, deadline)
            )
            try:
                async for line in response.content:
                    yield line.decode("utf-8", "replace").rstrip("\r\n")
            except TimeoutError:
                raise BackendError(
                    self.name, f"the stream stalled: nothing for {self.config.timeout_s}s"
                ) from None
            except aiohttp.ClientError as exc:
                raise BackendError(self.name, f"the stream was cut off: {describe(exc)}") from None
            finally:
                response.close()

    @contextmanager
    def _failures(self) -> Iterator[None]:
        """A timeout or a lost connection becomes a retryable ``BackendError``."""
        try:
            yield
        except TimeoutError:
            raise BackendError(
                self.name, f"no answer within {self.config.timeout_s}s", retryable=True
            ) from None
        except _aiohttp().ClientError as exc:
            raise BackendError(self.name, describe(exc), retryable=True) from None

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, decode: bool = True
    ) -> _Reply:
        """Send and read the whole reply (JSON-decoded when ``decode``)."""
        response = await self._open(method, path, body)
        try:
            with self._failures():
                text = await response.text()
        finally:
            response.release()
        return _Reply(_json(self.name, text) if decode else None, response.headers)

    async def _open(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        """Send and wait for the status line; a non-200 answer, a timeout or a lost connection
        becomes a ``BackendError``. The caller reads (and releases) the body."""
        url = self.base_url + path.lstrip("/")
        with self._failures():
            response = await self._session.request(method, url, json=body)
        if response.status != 200:
            try:
                text = await response.text()
            except (TimeoutError, _aiohttp().ClientError):
                text = ""
            finally:
                response.release()
            raise BackendError(
                self.name,
                f"HTTP {response.status}: {error_detail(text)}",
                retryable=response.status in RETRY_STATUS,
            )
        return response


def describe(exc: BaseException) -> str:
    """What went wrong with a connection, in words: aiohttp's exceptions mapped in one table
    (a repr such as ``ClientConnectorError(ConnectionKey(host=...`` tells an operator little)."""
    aiohttp = _aiohttp()
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        why = os.strerror(errno).lower() if errno else str(exc.os_error) or "no route"
        return f"cannot connect to {exc.host}:{exc.port} ({why})"
    table = (
        (aiohttp.ServerDisconnectedError, "the server closed the connection without answering"),
        (aiohttp.ClientPayloadError, "the reply was cut off before its end"),
        (aiohttp.ServerTimeoutError, "the server stopped sending"),
        (aiohttp.InvalidURL, "the configured base_url is not a valid URL"),
        (aiohttp.ClientResponseError, "the server sent a malformed HTTP reply"),
        (aiohttp.ClientOSError, "the connection failed"),
    )
    words = next((text for kind, text in table if isinstance(exc, kind)), "the request failed")
    detail = str(exc).strip()
    return f"{words} ({detail})" if detail and len(detail) < 200 else words


@dataclass(frozen=True)
class _Reply:
    body: Any
    headers: Mapping[str, str]


def _json(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise BackendError(name, f"the reply is not JSON: {text[:200]!r}") from None


def error_detail(text: str) -> str:
    """The message inside an error body in any of the shapes servers use: OpenAI's
    ``{"error": {"message"}}``, TGI's and Ollama's ``{"error": "..."}``, FastAPI's
    ``{"detail"}``; the raw text (shortened) otherwise."""
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return str(error)[:300]
    return text[:300]


async def sse_data(lines: AsyncGenerator[str, None]) -> AsyncGenerator[str, None]:
    """The ``data:`` payloads of a Server-Sent Events stream, up to ``[DONE]``. Closing this
    closes ``lines`` (and so the connection) at once."""
    async with aclosing(lines):
        async for line in lines:
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            if payload:
                yield payload


def parse_event(name: str, payload: str) -> dict[str, Any]:
    """One JSON event of a stream; an ``error`` event becomes a ``BackendError``."""
    try:
        event = json.loads(payload)
    except ValueError:
        raise BackendError(name, f"malformed stream event: {payload[:200]!r}") from None
    if not isinstance(event, dict):
        raise BackendError(name, f"malformed stream event: {payload[:200]!r}")
    if event.get("error"):
        raise BackendError(name, f"the server reported: {error_detail(payload)}")
    return event
