"""A chain of generators: when one fails or times out, the next one answers.

The answer's ``generator`` names the one that served; ``extra["fallback_errors"]`` lists why
the ones before it did not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from llmops.errors import BackendError
from llmops.protocols import Generator
from llmops.types import Generation, Message, ScoredChunk


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

    async def generate(
        self, question: str, context: Sequence[ScoredChunk], prompt: Sequence[Message]
    ) -> Generation:
        errors: list[str] = []
        for generator in self.generators:
            try:
                result = await generator.generate(question, context, prompt)
            except BackendError as exc:
                errors.append(str(exc))
                continue
            if errors:
                result = replace(result, extra={**result.extra, "fallback_errors": errors})
            return result
        raise BackendError(self.name, "every generator failed: " + "; ".join(errors))
