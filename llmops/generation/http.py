"""HTTP transport for model servers: one pooled client, a concurrency limit, timeouts, retries
with jittered exponential backoff on 429 / 5xx / connection errors, and streaming reads that
turn a stalled or cut-off stream into a ``BackendError``."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
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


class HttpBackend:
    """The connection to one model server, named ``name`` in every error it raises."""

    def __init__(self, name: str, config: HttpBackendConfig, base_url: str | None = None) -> None:
        self.name = name
        self.config = config
        self.base_url = (base_url or config.base_url).rstrip("/")
        self._client: Any = None
        self._slots: asyncio.Semaphore | None = None

    async def start(self) -> None:
        httpx = require("httpx", "llm")
        key = self.config.api_key
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"authorization": f"Bearer {key}"} if key else {},
            timeout=self.config.timeout_s,
            limits=httpx.Limits(max_connections=self.config.max_concurrency),
        )
        self._slots = asyncio.Semaphore(self.config.max_concurrency)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _ready(self) -> tuple[Any, asyncio.Semaphore]:
        if self._client is None or self._slots is None:
            raise BackendError(self.name, "generator not started")
        return self._client, self._slots

    async def get_json(self, path: str) -> Any:
        """GET without retries (model lists)."""
        client, _ = self._ready()
        return _json(self.name, await self._send(client.build_request("GET", path)))

    async def ping(self, path: str) -> None:
        """GET without retries; raises ``BackendError`` unless the answer is 200 (health)."""
        client, _ = self._ready()
        await self._send(client.build_request("GET", path))

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        """POST ``body``, retrying transient failures; returns the decoded JSON reply."""
        reply, _ = await self.post_json_with_headers(path, body)
        return reply

    async def post_json_with_headers(
        self, path: str, body: dict[str, Any]
    ) -> tuple[Any, Mapping[str, str]]:
        """``post_json``, plus the reply's headers (TGI counts prompt tokens in one)."""
        client, slots = self._ready()

        async def once() -> tuple[Any, Mapping[str, str]]:
            response = await self._send(client.build_request("POST", path, json=body))
            return _json(self.name, response), response.headers

        async with slots:
            return await with_retries(once, self.config.max_retries, self.config.backoff_s)

    async def stream_lines(self, path: str, body: dict[str, Any]) -> AsyncGenerator[str, None]:
        """POST ``body`` and yield the reply's lines as they arrive. Opening the stream is
        retried like ``post_json``; once lines flow, a failure raises ``BackendError``."""
        client, slots = self._ready()
        httpx = require("httpx", "llm")

        async def open_stream() -> Any:
            request = client.build_request("POST", path, json=body)
            return await self._send(request, stream=True)

        async with slots:
            response = await with_retries(
                open_stream, self.config.max_retries, self.config.backoff_s
            )
            try:
                async for line in response.aiter_lines():
                    yield line
            except httpx.TimeoutException:
                raise BackendError(
                    self.name, f"the stream stalled: nothing for {self.config.timeout_s}s"
                ) from None
            except httpx.TransportError as exc:
                raise BackendError(self.name, f"the stream was cut off: {exc!r}") from None
            finally:
                await response.aclose()

    async def _send(self, request: Any, stream: bool = False) -> Any:
        """Send; a non-200 answer, a timeout or a lost connection becomes a ``BackendError``."""
        httpx = require("httpx", "llm")
        try:
            response = await self._client.send(request, stream=stream)
        except httpx.TimeoutException:
            raise BackendError(
                self.name, f"no answer within {self.config.timeout_s}s", retryable=True
            ) from None
        except httpx.TransportError as exc:
            raise BackendError(self.name, f"connection failed: {exc!r}", retryable=True) from None
        if response.status_code != 200:
            if stream:
                await response.aread()
                await response.aclose()
            raise BackendError(
                self.name,
                f"HTTP {response.status_code}: {error_detail(response.text)}",
                retryable=response.status_code in RETRY_STATUS,
            )
        return response


def _json(name: str, response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        raise BackendError(name, f"the reply is not JSON: {response.text[:200]!r}") from None


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
