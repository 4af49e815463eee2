"""A chain of generators: when one fails or times out, the next one answers.

The answer's ``generator`` names the one that served; ``extra["fallback_errors"]`` lists why
the ones before it did not. A stream falls back only before its first piece of text: once
text has reached the caller, a failure is reported rather than mixed with another answer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace

from llmops.errors import BackendError
from llmops.protocols import Generator
from llmops.types import Generation, GenerationRequest

log = logging.getLogger(__name__)


class FallbackChain:
    def __init__(self, generators: Sequence[Generator]) -> None:
        if not generators:
            raise ValueError("a fallback chain needs at least one generator")
        self.generators = list(generators)
        self.name = " -> ".join(g.name for g in self.generators)
        self.uses_prompt = any(g.uses_prompt for g in self.generators)

    async def start(self) -> None:
        for generator in self.generators:
            await generator.start()

    async def close(self) -> None:
        for generator in self.generators:
            await generator.close()

    async def generate(self, request: GenerationRequest) -> Generation:
        errors: list[str] = []
        for generator in self.generators:
            try:
                result = await generator.generate(request)
            except BackendError as exc:
                errors.append(self._failed(generator, str(exc)))
                continue
            return _noted(result, errors)
        raise self._exhausted(errors)

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[str | Generation, None]:
        errors: list[str] = []
        for generator in self.generators:
            pieces = generator.stream(request)
            try:
                first = await anext(pieces)
            except (BackendError, StopAsyncIteration) as exc:
                errors.append(
                    self._failed(generator, str(exc) or f"{generator.name}: the stream was empty")
                )
                await pieces.aclose()
                continue
            try:
                yield first if isinstance(first, str) else _noted(first, errors)
                async for item in pieces:
                    yield item if isinstance(item, str) else _noted(item, errors)
            finally:
                await pieces.aclose()
            return
        raise self._exhausted(errors)

    def _failed(self, generator: Generator, error: str) -> str:
        """Log a failure the next generator may hide; returns it for the answer's record."""
        following = self.generators.index(generator) + 1
        if following < len(self.generators):
            log.warning("%s; falling back to %s", error, self.generators[following].name)
        return error

    def _exhausted(self, errors: list[str]) -> BackendError:
        return BackendError(self.name, "every generator failed: " + "; ".join(errors))


def _noted(result: Generation, errors: list[str]) -> Generation:
    if not errors:
        return result
    return replace(result, extra={**result.extra, "fallback_errors": list(errors)})
