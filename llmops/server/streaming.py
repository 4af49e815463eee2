"""Server-Sent Events for streamed answers (POST /query and /v1/chat/completions).

The first piece of an answer is awaited before the response starts, so whatever fails before
any text exists (empty index, bad filter, every backend down) still gets its 4xx/5xx status.
After that the status is sent; a later failure ends the stream with an error event.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from fastapi.responses import StreamingResponse

from llmops.errors import LLMOpsError
from llmops.types import Answer

Piece = str | Answer
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sse(data: Any, event: str | None = None) -> str:
    """One event: ``data`` as JSON (or as is, for a string like ``[DONE]``)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


async def first_piece(pieces: AsyncGenerator[Piece, None]) -> Piece:
    """The stream's first item; errors propagate (and close the stream) before any response."""
    try:
        return await anext(pieces)
    except BaseException:
        await pieces.aclose()
        raise


def event_stream(
    first: Piece,
    pieces: AsyncGenerator[Piece, None],
    encode: Callable[[Piece], str],
    encode_error: Callable[[LLMOpsError], str],
) -> StreamingResponse:
    """An SSE response relaying ``first`` and the rest of ``pieces``. When the client goes away
    the relay is cancelled and ``pieces`` closed, which stops the generator's work."""

    async def relay() -> AsyncIterator[str]:
        try:
            yield encode(first)
            async for item in pieces:
                yield encode(item)
        except LLMOpsError as exc:
            yield encode_error(exc)
        finally:
            await pieces.aclose()

    return StreamingResponse(relay(), media_type="text/event-stream", headers=HEADERS)
