"""Helpers between the two ways a generator answers: all at once and as a stream."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from llmops.errors import BackendError
from llmops.types import Generation


async def collect(stream: AsyncGenerator[str | Generation, None], name: str) -> Generation:
    """Run a stream to its end and return its final ``Generation``."""
    try:
        async for item in stream:
            if isinstance(item, Generation):
                return item
    finally:
        await stream.aclose()
    raise BackendError(name, "the stream ended without a final answer")
