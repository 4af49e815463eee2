"""Every built-in generator keeps the Generator contract (llmops.testing)."""

from __future__ import annotations

import asyncio

from llmops.generation.extractive import ExtractiveGenerator
from llmops.generation.fallback import FallbackChain
from llmops.generation.openai_compat import OpenAICompatGenerator
from llmops.testing.generator_contract import check_generator
from tests.stubs.openai_server import Behaviour, serve


def test_extractive_keeps_the_contract() -> None:
    answer = asyncio.run(check_generator(ExtractiveGenerator(ExtractiveGenerator.Config())))
    assert answer.cited == (1,)


def test_openai_compat_keeps_the_contract() -> None:
    with serve(Behaviour(reply="Stop the server, then restore [1].")) as url:
        config = OpenAICompatGenerator.Config(base_url=url, model="tiny")
        answer = asyncio.run(check_generator(OpenAICompatGenerator(config)))
    assert answer.cited == (1,) and answer.usage.completion_tokens > 0


def test_fallback_chain_keeps_the_contract() -> None:
    dead = OpenAICompatGenerator(
        OpenAICompatGenerator.Config(base_url="http://127.0.0.1:9/v1", model="x", max_retries=0)
    )
    chain = FallbackChain([dead, ExtractiveGenerator(ExtractiveGenerator.Config())])
    answer = asyncio.run(check_generator(chain))
    assert answer.generator == "extractive" and answer.extra["fallback_errors"]
