"""An Ollama server through its official Python client (``ollama.AsyncClient``): ``/api/chat``
with Ollama's own ``options`` and ``keep_alive``, retries on 429 / 5xx / lost connections, a
concurrency limit, and a clear error for a model that is not pulled.

Both ``generate`` and ``stream`` read the NDJSON stream: the client's timeout bounds each read,
so a long answer on slow hardware is not cut short while a server that goes silent fails within
``timeout_s``."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing, contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from pydantic import Field, field_validator

from llmops.deps import require
from llmops.errors import BackendError
from llmops.generation.citations import generation_from_text
from llmops.generation.http import RETRY_STATUS, with_retries
from llmops.generation.sampling import RetryConfig, SamplingConfig
from llmops.generation.streaming import collect
from llmops.registry import register
from llmops.types import Generation, GenerationRequest, Usage

if TYPE_CHECKING:
    from ollama import AsyncClient, ChatResponse

    Chunks = AsyncGenerator[ChatResponse, None]

# Our sampling settings under the names Ollama's ``options`` gives them.
OPTION_NAMES = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "num_predict",
    "seed": "seed",
    "stop": "stop",
}
# What Ollama accepts for keep_alive besides a number of seconds: a Go duration ("5m", "1h30m").
_DURATION = re.compile(r"[-+]?(0|((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)")
_SECONDS = re.compile(r"-?\d+")


@register(
    "generator",
    "ollama",
    summary="an Ollama server through its official client: options, keep_alive, streaming",
    extra="llm",
    requires=("ollama",),
)
class OllamaGenerator:
    class Config(SamplingConfig, RetryConfig):
        host: str = Field("http://127.0.0.1:11434", description="The Ollama server (OLLAMA_HOST).")
        model: str = Field(min_length=1, description="A pulled model: llama3.2, qwen2.5:7b, ...")
        keep_alive: int | str | None = Field(
            None,
            description="How long Ollama keeps the model loaded after a request: '5m', '1h' or "
            "seconds; -1 keeps it loaded, 0 unloads it at once; unset: the server's default.",
        )
        options: dict[str, Any] = Field(
            default_factory=dict,
            description="Passed to Ollama as is: num_ctx, repeat_penalty, top_k, min_p, ...",
        )
        timeout_s: float = Field(  # Ollama's defaults differ from other servers'
            120.0,
            gt=0,
            description="Give up when the server sends nothing for this long; the first request "
            "after the model was unloaded waits while Ollama loads it.",
        )
        max_concurrency: int = Field(
            1,
            ge=1,
            description="Requests in flight; at most the server's OLLAMA_NUM_PARALLEL: a request "
            "Ollama queues gets no bytes until it runs, and can hit timeout_s meanwhile.",
        )

        @field_validator("keep_alive")
        @classmethod
        def _duration(cls, value: int | str | None) -> int | str | None:
            if isinstance(value, str) and _SECONDS.fullmatch(value.strip()):
                return int(value)  # "300" from an environment variable means seconds
            if isinstance(value, str) and not _DURATION.fullmatch(value.strip()):
                raise ValueError(
                    f"'{value}' is not a duration: write '5m', '1h30m' or seconds such as 300"
                )
            return value.strip() if isinstance(value, str) else value

        @field_validator("options")
        @classmethod
        def _no_sampling_in_options(cls, value: dict[str, Any]) -> dict[str, Any]:
            for ours, theirs in OPTION_NAMES.items():
                if theirs in value:
                    raise ValueError(
                        f"set '{ours}' on the generator instead of options.{theirs}: "
                        "requests override it there"
                    )
            return value

    uses_prompt = True

    def __init__(self, config: Config) -> None:
        self.config = config
        self.name = f"ollama:{config.model}"
        self._client: AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None

    async def start(self) -> None:
        """Open the client and fail unless the server is up and has the model pulled."""
        ollama = require("ollama", "llm")
        self._client = ollama.AsyncClient(host=self.config.host, timeout=self.config.timeout_s)
        self._slots = asyncio.Semaphore(self.config.max_concurrency)
        try:
            await self._check_model(self._client)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def _check_model(self, client: AsyncClient) -> None:
        # /api/tags rather than /api/show: the client cannot parse some servers' show replies
        # (ollama-python#607), while every field of the model list is optional.
        with self._errors(started=False):
            listed = await client.list()
        pulled = [m.model for m in listed.models if m.model]
        if _canonical(self.config.model) not in {_canonical(name) for name in pulled}:
            raise BackendError(
                self.name,
                f"{self._not_pulled()} (pulled there: {', '.join(pulled) or 'nothing'})",
            )

    def options(self, request: GenerationRequest) -> dict[str, Any]:
        """The configured Ollama options plus this request's sampling, in Ollama's names."""
        sampling = self.config.sampling(request.options)
        return {**self.config.options, **{OPTION_NAMES[k]: v for k, v in sampling.items()}}

    async def generate(self, request: GenerationRequest) -> Generation:
        return await collect(self.stream(request), self.name)

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[str | Generation, None]:
        if self._client is None or self._slots is None:
            raise BackendError(self.name, "generator not started")
        pieces: list[str] = []
        async with self._slots:
            open_stream = partial(self._open, self._client, request)
            chunks, chunk = await with_retries(
                self.name, open_stream, self.config, request.deadline
            )
            async with aclosing(chunks):  # closing early ends the client's HTTP stream
                while True:
                    if chunk.message.content:
                        pieces.append(chunk.message.content)
                        yield chunk.message.content
                    if chunk.done:
                        break
                    chunk = await self._next(chunks, started=True)
        usage = Usage(chunk.prompt_eval_count or 0, chunk.eval_count or 0)
        yield generation_from_text(self.name, "".join(pieces), request, usage)

    async def _open(
        self, client: AsyncClient, request: GenerationRequest
    ) -> tuple[Chunks, ChatResponse]:
        """Send the request and wait for the first chunk, so that a failure before any text
        (refused, unreachable, silent) can be retried."""
        reply = await client.chat(
            model=self.config.model,
            messages=[{"role": m.role, "content": m.content} for m in request.prompt],
            stream=True,
            options=self.options(request),
            keep_alive=self.config.keep_alive,
        )
        chunks = cast("Chunks", reply)  # the client returns an async generator
        try:
            return chunks, await self._next(chunks, started=False)
        except BaseException:
            await chunks.aclose()
            raise

    async def _next(self, chunks: Chunks, started: bool) -> ChatResponse:
        with self._errors(started):
            try:
                return await anext(chunks)
            except StopAsyncIteration:
                raise BackendError(
                    self.name,
                    "the stream was cut off before the answer was finished (no final chunk "
                    "with done: true)",
                    retryable=not started,
                ) from None

    @contextmanager
    def _errors(self, started: bool) -> Iterator[None]:
        """Turn what the client raises into a ``BackendError``; before the first chunk
        (``started`` False) unreachable, silent and overloaded servers are retryable."""
        ollama = require("ollama", "llm")
        httpx = require("httpx", "llm")
        timeout = self.config.timeout_s
        try:
            yield
        except ollama.ResponseError as exc:
            raise self._refused(exc.status_code, str(exc.error)) from None
        except httpx.TimeoutException:
            if started:
                reason = f"the stream stalled: nothing for {timeout}s"
                raise BackendError(self.name, reason) from None
            raise BackendError(self.name, f"no answer within {timeout}s", retryable=True) from None
        except (ConnectionError, httpx.TransportError) as exc:  # the client raises the former
            if started:
                raise BackendError(self.name, f"the stream was cut off: {exc!r}") from None
            raise BackendError(
                self.name,
                f"connection failed: cannot reach Ollama at {self.config.host} "
                f"({type(exc).__name__}); is `ollama serve` running there?",
                retryable=True,
            ) from None
        except (ValueError, TypeError, AttributeError) as exc:  # the client's JSON / model parse
            raise BackendError(self.name, f"malformed reply: {str(exc)[:200]}") from None

    def _refused(self, status: int, error: str) -> BackendError:
        if status == 404 and "model" in error and "not found" in error:
            return BackendError(self.name, self._not_pulled())
        if status == -1:  # an {"error": ...} line inside a stream
            return BackendError(self.name, f"the server reported: {error[:300]}")
        return BackendError(
            self.name, f"HTTP {status}: {error[:300]}", retryable=status in RETRY_STATUS
        )

    def _not_pulled(self) -> str:
        model, host = self.config.model, self.config.host
        return f"model '{model}' is not pulled on {host}: run `ollama pull {model}`"


def _canonical(name: str) -> str:
    """A model name as Ollama matches it: case-insensitive, ``:latest`` when no tag is given,
    without the default registry and namespace."""
    name = name.lower().removeprefix("registry.ollama.ai/").removeprefix("library/")
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
