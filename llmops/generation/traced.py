"""A generator whose calls are OpenTelemetry spans (``chat {model}``), with the GenAI
semantic conventions' attributes: operation, provider, model, sampling asked for, tokens in
and out, time to the first streamed piece; retries are span events (``llmops.generation.http``).

In a fallback chain each backend is wrapped on its own: a backend that failed shows as a
failed span before the one that answered, and ``llmops.fallback.position`` says which link of
the chain each is (0: the primary). ``build`` wraps generators only when tracing is on.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from opentelemetry.trace import Span, Tracer

from llmops import tracing
from llmops.protocols import Generator
from llmops.types import Generation, GenerationRequest


class TracedGenerator:
    def __init__(
        self, inner: Generator, tracer: Tracer, provider: str, model: str, position: int = 0
    ) -> None:
        self.inner, self.tracer = inner, tracer
        self.provider, self.model, self.position = provider, model, position
        self.name = inner.name
        self.uses_prompt = inner.uses_prompt

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def generate(self, request: GenerationRequest) -> Generation:
        with tracing.active(self._span(request, stream=False)) as span:
            generation = await self.inner.generate(request)
            _finished(span, generation)
            return generation

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[str | Generation, None]:
        span = self._span(request, stream=True)
        started, first = time.perf_counter(), True
        async with aclosing(tracing.within(span, self.inner.stream(request))) as pieces:
            async for item in pieces:
                if isinstance(item, Generation):
                    _finished(span, item)
                elif first:
                    first = False
                    seconds = time.perf_counter() - started
                    span.set_attribute(tracing.TIME_TO_FIRST_CHUNK, seconds)
                yield item

    def _span(self, request: GenerationRequest, stream: bool) -> Span:
        options = request.options
        attributes: dict[str, Any] = {
            tracing.OPERATION: "chat",
            tracing.PROVIDER: self.provider,
            tracing.REQUEST_MODEL: self.model,
            tracing.REQUEST_STREAM: stream,
            tracing.REQUEST_MAX_TOKENS: options.max_tokens,
            tracing.REQUEST_TEMPERATURE: options.temperature,
            "llmops.generator": self.name,
            "llmops.fallback.position": self.position,
            "llmops.context_chunks": len(request.context),
        }
        given = {key: value for key, value in attributes.items() if value is not None}
        return self.tracer.start_span(f"chat {self.model}", attributes=given)


def _finished(span: Span, generation: Generation) -> None:
    if span.is_recording():
        usage = generation.usage
        span.set_attributes(
            {
                tracing.INPUT_TOKENS: usage.prompt_tokens,
                tracing.OUTPUT_TOKENS: usage.completion_tokens,
                "llmops.abstained": generation.abstained,
                "llmops.cited": len(generation.cited),
            }
        )
