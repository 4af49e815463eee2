"""HTTP transport for model servers: one pooled client, a concurrency limit, timeouts, retries
with jittered exponential backoff on 429 / 5xx / connection errors, and streaming reads that
turn a stalled or cut-off stream into a ``BackendError``."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from llmops.deps import require
from llmops.errors import BackendError
from llmops.generation.sampling import HttpBackendConfig

T = TypeVar("T")
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


async def with_retries(call: Callable[[], Awaitable[T]], max_retries: int, backoff_s: float) -> T:
    """Await ``call()``; on a retryable ``BackendError`` wait and try again, up to
    ``max_retries`` times (delays ``backoff_s``, 2×, 4× ... with jitter)."""
    attempt = 0
    while True:
        try:
            return await call()
        except BackendError as exc:
            if not exc.retryable or attempt >= max_retries:
                raise
        attempt += 1
        delay = backoff_s * 2 ** (attempt - 1)
        await asyncio.sleep(delay * (0.5 + random.random() / 2))


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

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        """POST ``body``, retrying transient failures; returns the decoded JSON reply."""
        reply, _ = await self.post_json_with_headers(path, body)
        return reply

    async def post_json_with_headers(
        self, path: str, body: dict[str, Any]
    ) -> tuple[Any, Mapping[str, str]]:
        """``post_json``, plus the reply's headers (TGI counts prompt tokens in one)."""
        slots = self._ready()

        async def once() -> tuple[Any, Mapping[str, str]]:
            reply = await self._request("POST", path, body)
            return reply.body, reply.headers

        async with slots:
            return await with_retries(once, self.config.max_retries, self.config.backoff_s)

    async def stream_lines(self, path: str, body: dict[str, Any]) -> AsyncGenerator[str, None]:
        """POST ``body`` and yield the reply's lines as they arrive. Opening the stream is
        retried like ``post_json``; once lines flow, a failure raises ``BackendError``."""
        slots = self._ready()
        aiohttp = _aiohttp()

        async def open_stream() -> Any:
            return await self._open("POST", path, body)

        async with slots:
            response = await with_retries(
                open_stream, self.config.max_retries, self.config.backoff_s
            )
            try:
                async for line in response.content:
                    yield line.decode("utf-8", "replace").rstrip("\r\n")
            except TimeoutError:
                raise BackendError(
                    self.name, f"the stream stalled: nothing for {self.config.timeout_s}s"
                ) from None
            except aiohttp.ClientError as exc:
                raise BackendError(self.name, f"the stream was cut off: {exc!r}") from None
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
            raise BackendError(self.name, f"connection failed: {exc!r}", retryable=True) from None

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
