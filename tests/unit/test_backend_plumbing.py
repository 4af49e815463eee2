"""Pieces every LLM backend shares: sampling overrides, error bodies, SSE framing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from llmops.errors import BackendError
from llmops.generation.http import error_detail, parse_event, sse_data
from llmops.generation.sampling import SamplingConfig
from llmops.types import GenerationOptions


def test_request_options_override_the_config_field_by_field() -> None:
    config = SamplingConfig(temperature=0.0, max_tokens=256, stop=["###"])
    assert config.sampling(GenerationOptions()) == {
        "temperature": 0.0,
        "max_tokens": 256,
        "stop": ["###"],
    }
    override = GenerationOptions(temperature=0.8, top_p=0.9, seed=4, stop=())
    assert config.sampling(override) == {
        "temperature": 0.8,
        "top_p": 0.9,
        "max_tokens": 256,
        "seed": 4,
        "stop": [],
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"error": {"message": "model not found", "type": "x"}}', "model not found"),  # OpenAI
        ('{"error": "Input validation error", "error_type": "validation"}', "Input validation"),
        ('{"detail": "Not Found"}', "Not Found"),
        ("<html>502 Bad Gateway</html>", "<html>502 Bad Gateway</html>"),
    ],
)
def test_error_detail_reads_every_server_shape(body: str, expected: str) -> None:
    assert error_detail(body).startswith(expected)


def test_sse_data_stops_at_done_and_skips_comments() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in [": keep-alive", "event: x", 'data: {"a": 1}', "", "data: [DONE]", "data: 2"]:
            yield line

    async def run() -> list[str]:
        return [payload async for payload in sse_data(lines())]

    assert asyncio.run(run()) == ['{"a": 1}']


def test_stream_events_that_are_errors_or_garbage_raise() -> None:
    with pytest.raises(BackendError, match="the server reported: overloaded"):
        parse_event("b", '{"error": "overloaded", "error_type": "overloaded"}')
    with pytest.raises(BackendError, match="malformed stream event"):
        parse_event("b", "{oops")
    assert parse_event("b", '{"token": {"text": "a"}}') == {"token": {"text": "a"}}
