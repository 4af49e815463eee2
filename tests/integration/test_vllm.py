"""The vllm generator against a local server following vLLM's OpenAI-compatible API
(/health, /v1/models, /v1/chat/completions with vLLM's extra sampling fields)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from llmops.errors import BackendError
from llmops.generation.vllm import VLLMGenerator
from llmops.testing.generator_contract import CONTEXT, PROMPT, check_generator
from llmops.types import GenerationOptions, GenerationRequest
from tests.stubs.openai_server import Behaviour, serve


def _generator(url: str, **settings: Any) -> VLLMGenerator:
    return VLLMGenerator(VLLMGenerator.Config(base_url=url, backoff_s=0.01, **settings))


def test_vllm_keeps_the_contract_and_sends_its_sampling_extras() -> None:
    behaviour = Behaviour(models=("meta-llama/Llama-3.1-8B-Instruct", "support-lora"))
    with serve(behaviour) as url:
        generator = _generator(
            url,
            model="support-lora",
            top_k=20,
            min_p=0.05,
            repetition_penalty=1.1,
            structured_output={"choice": ["yes", "no"]},
        )
        answer = asyncio.run(check_generator(generator))
    assert answer.generator == "vllm:support-lora" and answer.cited == (1,)
    body = behaviour.requests[0]
    assert body["model"] == "support-lora"
    assert (body["top_k"], body["min_p"], body["repetition_penalty"]) == (20, 0.05, 1.1)
    assert body["structured_outputs"] == {"choice": ["yes", "no"]}
    streamed = [r for r in behaviour.requests if r.get("stream")]
    assert streamed and streamed[0]["stream_options"] == {"include_usage": True}


def test_older_vllm_gets_guided_fields_and_requests_override_sampling() -> None:
    behaviour = Behaviour()
    with serve(behaviour) as url:
        generator = _generator(
            url,
            model="tiny",
            structured_output={"json": {"type": "object"}},
            structured_output_style="guided",
        )
        options = GenerationOptions(temperature=0.7, max_tokens=9, stop=("END",), seed=1)

        async def run() -> None:
            await generator.start()
            try:
                await generator.generate(GenerationRequest("q", CONTEXT, PROMPT, options))
            finally:
                await generator.close()

        asyncio.run(run())
    body = behaviour.requests[0]
    assert body["guided_json"] == {"type": "object"} and "structured_outputs" not in body
    assert (body["temperature"], body["max_tokens"], body["stop"], body["seed"]) == (
        0.7,
        9,
        ["END"],
        1,
    )


def test_start_fails_clearly_when_the_model_or_adapter_is_not_served() -> None:
    with serve(Behaviour(models=("base-model",))) as url:
        generator = _generator(url, model="missing-lora")
        with pytest.raises(BackendError, match=r"does not serve .missing-lora..*base-model"):
            asyncio.run(generator.start())


def test_start_fails_clearly_when_the_server_is_down() -> None:
    generator = _generator("http://127.0.0.1:9/v1", model="x")
    with pytest.raises(BackendError, match=r"cannot connect to 127\.0\.0\.1"):
        asyncio.run(generator.start())


def test_structured_output_takes_exactly_one_constraint() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        VLLMGenerator.Config(model="x", structured_output={"regex": "a+", "choice": ["a"]})
