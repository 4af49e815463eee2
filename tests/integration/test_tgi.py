"""The tgi generator against a local server that follows TGI's published HTTP API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from pydantic import ValidationError

from llmops import RAG
from llmops.errors import BackendError
from llmops.generation.tgi import TGIGenerator
from llmops.testing.generator_contract import check_generator
from llmops.types import (
    Chunk,
    Generation,
    GenerationOptions,
    GenerationRequest,
    Message,
    ScoredChunk,
)
from tests.conftest import HASHING, ConfigWriter
from tests.stubs.tgi_server import Behaviour, serve

MODEL = Behaviour().model_id
CONTEXT = (ScoredChunk(Chunk("a", "m.md", "Bleed the pump first.", "m.md", 0), 0.7),)
PROMPT = (Message("system", "Use the context."), Message("user", "How do I start the pump?"))
REQUEST = GenerationRequest("How do I start the pump?", CONTEXT, PROMPT)
CHATML_PROMPT = (
    "<|im_start|>system\nUse the context.<|im_end|>\n"
    "<|im_start|>user\nHow do I start the pump?<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def _generator(url: str, **settings: Any) -> TGIGenerator:
    return TGIGenerator(TGIGenerator.Config(base_url=url, backoff_s=0.01, **settings))


async def _generate(url: str, request: GenerationRequest = REQUEST, **settings: Any) -> Generation:
    generator = _generator(url, **settings)
    await generator.start()
    try:
        return await generator.generate(request)
    finally:
        await generator.close()


async def _stream(url: str, **settings: Any) -> tuple[list[str], Generation | BackendError]:
    """The pieces a stream yielded, and its final Generation or the error that ended it."""
    generator = _generator(url, **settings)
    await generator.start()
    pieces: list[str] = []
    try:
        async for item in generator.stream(REQUEST):
            if isinstance(item, Generation):
                return pieces, item
            pieces.append(item)
    except BackendError as exc:
        return pieces, exc
    finally:
        await generator.close()
    raise AssertionError("the stream ended without a Generation")


# --- the contract, both APIs ---------------------------------------------------------------


@pytest.mark.parametrize("api", ["messages", "generate"])
async def test_keeps_the_contract(api: str) -> None:
    behaviour = Behaviour(reply="Stop the server, then restore [1].")
    with serve(behaviour) as url:
        answer = await check_generator(_generator(url, api=api))
    assert answer.cited == (1,) and answer.generator == f"tgi:{MODEL}"
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    paths = {"messages" if "messages" in body else "inputs" for body in behaviour.requests}
    assert paths == {"messages" if api == "messages" else "inputs"}


async def test_messages_api_asks_for_model_tgi_at_v1() -> None:
    behaviour = Behaviour()
    with serve(behaviour) as url:
        result = await _generate(url, temperature=0.0, max_tokens=64)
    body = behaviour.requests[0]
    assert body["model"] == "tgi" and body["temperature"] == 0.0 and body["max_tokens"] == 64
    assert body["messages"][1] == {"role": "user", "content": "How do I start the pump?"}
    assert result.text == behaviour.reply and result.usage.completion_tokens == 10


# --- the native API: request mapping, usage, streaming ------------------------------------


async def test_native_body_maps_sampling_and_tgi_extras() -> None:
    behaviour = Behaviour()
    settings = dict(temperature=0.7, top_p=0.9, max_tokens=64, seed=7, stop=["\n\n"])
    extras = dict(top_k=20, repetition_penalty=1.1, truncate=900, typical_p=0.95)
    with serve(behaviour) as url:
        await _generate(url, api="generate", **settings, **extras)
    assert behaviour.requests[0] == {
        "inputs": CHATML_PROMPT,
        "parameters": {
            "do_sample": True,
            "temperature": 0.7,
            "top_p": 0.9,
            "max_new_tokens": 64,
            "seed": 7,
            "stop": ["\n\n"],
            **extras,
            "details": True,
            "return_full_text": False,
        },
    }


async def test_temperature_zero_is_greedy_and_accepted_by_tgi() -> None:
    behaviour = Behaviour()
    with serve(behaviour) as url:
        result = await _generate(url, api="generate", temperature=0.0, top_p=0.9, top_k=5)
    params = behaviour.requests[0]["parameters"]
    assert params["do_sample"] is False  # TGI would reject temperature 0 with a 422
    assert not {"temperature", "top_p", "top_k", "typical_p"} & set(params)
    assert result.text == behaviour.reply


async def test_request_options_override_config_and_top_p_one_is_left_out() -> None:
    behaviour = Behaviour()
    options = GenerationOptions(temperature=0.5, top_p=1.0, max_tokens=12, stop=("END",))
    request = GenerationRequest(REQUEST.question, CONTEXT, PROMPT, options)
    with serve(behaviour) as url:
        await _generate(url, request, api="generate")  # top_p 1.0 would be a 422 from TGI
    params = behaviour.requests[0]["parameters"]
    assert params["temperature"] == 0.5 and params["do_sample"] is True and "top_p" not in params
    assert params["max_new_tokens"] == 12 and params["stop"] == ["END"]


async def test_custom_chat_template_renders_the_prompt() -> None:
    template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m.content }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    behaviour = Behaviour()
    with serve(behaviour) as url:
        await _generate(url, api="generate", chat_template=template)
    assert behaviour.requests[0]["inputs"] == (
        "<|system|>Use the context.</s><|user|>How do I start the pump?</s><|assistant|>"
    )


def test_config_rejects_a_broken_template_and_native_settings_on_messages() -> None:
    with pytest.raises(ValidationError, match="not a valid Jinja template"):
        TGIGenerator.Config(api="generate", chat_template="{% for m in %}")
    with pytest.raises(ValidationError, match="api: messages ignores top_k, truncate"):
        TGIGenerator.Config(top_k=5, truncate=100)
    assert TGIGenerator.Config().base_url == "http://127.0.0.1:8080"


async def test_native_usage_from_header_and_stream_details() -> None:
    behaviour = Behaviour()
    with serve(behaviour) as url:
        answer = await _generate(url, api="generate")
        _, final = await _stream(url, api="generate")
    prompt_words = len(CHATML_PROMPT.split())
    assert answer.usage.prompt_tokens == prompt_words and answer.usage.completion_tokens == 11
    assert isinstance(final, Generation) and final.usage == answer.usage


async def test_native_stream_yields_each_token_but_not_the_end_token() -> None:
    behaviour = Behaviour()
    with serve(behaviour) as url:
        pieces, final = await _stream(url, api="generate")
    assert pieces == behaviour.tokens() and isinstance(final, Generation)
    assert final.text == behaviour.reply and "</s>" not in final.text and final.cited == (1,)


# --- faults ---------------------------------------------------------------------------------


async def test_a_dead_server_fails_start_quickly_naming_the_url() -> None:
    generator = _generator("http://127.0.0.1:9", max_retries=0)
    started = time.perf_counter()
    with pytest.raises(
        BackendError, match=r"no ready TGI server at http://127\.0\.0\.1:9"
    ) as caught:
        await generator.start()
    await generator.close()
    assert time.perf_counter() - started < 2.0 and caught.value.retryable  # may come up later


async def test_a_server_still_loading_fails_start_with_its_health_answer() -> None:
    with serve(Behaviour(healthy=False)) as url:
        generator = _generator(url)
        with pytest.raises(BackendError, match="HTTP 503: unhealthy"):
            await generator.start()
        await generator.close()


async def test_max_tokens_beyond_the_servers_limit_fails_start() -> None:
    with serve(Behaviour(max_total_tokens=512)) as url:
        generator = _generator(url, max_tokens=512)
        with pytest.raises(BackendError, match=r"allows 512 tokens.*--max-total-tokens") as caught:
            await generator.start()
        await generator.close()
    assert caught.value.backend == f"tgi:{MODEL}"


@pytest.mark.parametrize("api", ["messages", "generate"])
async def test_a_slow_server_times_out_instead_of_hanging(api: str) -> None:
    behaviour = Behaviour(delay_s=1.5)
    with serve(behaviour) as url:
        started = time.perf_counter()
        with pytest.raises(BackendError, match=r"no answer within 0\.2s"):
            await _generate(url, api=api, timeout_s=0.2, max_retries=1)
        waited = time.perf_counter() - started
    assert waited < 1.0 and len(behaviour.requests) == 2


async def test_a_stream_that_stalls_mid_way_times_out() -> None:
    with serve(Behaviour(token_delay_s=1.0)) as url:
        started = time.perf_counter()
        _, error = await _stream(url, api="generate", timeout_s=0.3)
        waited = time.perf_counter() - started
    assert isinstance(error, BackendError) and "stalled" in str(error) and waited < 2.0


@pytest.mark.parametrize("status", [500, 429, 503])
async def test_transient_errors_are_retried_then_succeed(status: int) -> None:
    behaviour = Behaviour(fail_times=1, fail_status=status)
    with serve(behaviour) as url:
        answer = await _generate(url, api="generate", max_retries=2)
        _, final = await _stream(url, api="generate", max_retries=2)
    assert answer.text == behaviour.reply and isinstance(final, Generation)
    assert len(behaviour.requests) == 3  # one failure, then the answer, then the stream


async def test_a_validation_error_is_not_retried_and_says_why() -> None:
    behaviour = Behaviour()
    stops = ["a", "b", "c", "d", "e"]
    with serve(behaviour) as url:
        with pytest.raises(BackendError, match=r"HTTP 422: .*`stop` supports up to 4"):
            await _generate(url, api="generate", stop=stops, max_retries=3)
        assert len(behaviour.requests) == 1
        pieces, error = await _stream(url, api="generate", stop=stops, max_retries=3)
    assert pieces == [] and isinstance(error, BackendError)  # TGI reports it as a stream event
    assert "`stop` supports up to 4" in str(error) and len(behaviour.requests) == 2


async def test_malformed_json_is_a_backend_error() -> None:
    with serve(Behaviour(malformed=True)) as url:
        with pytest.raises(BackendError, match="not JSON"):
            await _generate(url, api="generate")
        pieces, error = await _stream(url, api="generate")
    assert pieces == [] and isinstance(error, BackendError) and "malformed" in str(error)


async def test_a_stream_cut_off_mid_way_is_an_error_not_a_short_answer() -> None:
    behaviour = Behaviour(cut_after_tokens=3)
    with serve(behaviour) as url:
        pieces, error = await _stream(url, api="generate")
    assert pieces == behaviour.tokens()[:3]
    assert isinstance(error, BackendError) and "cut off" in str(error)


async def test_an_error_event_mid_stream_ends_it_with_the_servers_reason() -> None:
    behaviour = Behaviour(error_after_tokens=2)
    with serve(behaviour) as url:
        pieces, error = await _stream(url, api="generate")
    assert pieces == behaviour.tokens()[:2] and isinstance(error, BackendError)
    assert "Request failed during generation" in str(error) and error.backend == f"tgi:{MODEL}"


@pytest.mark.parametrize("api", ["messages", "generate"])
async def test_an_abandoned_stream_is_seen_by_the_server(api: str) -> None:
    behaviour = Behaviour(token_delay_s=0.05)
    with serve(behaviour) as url:
        generator = _generator(url, api=api)
        await generator.start()
        stream: AsyncGenerator[str | Generation, None] = generator.stream(REQUEST)
        assert isinstance(await anext(stream), str)
        await stream.aclose()
        deadline = time.perf_counter() + 2.0
        while behaviour.abandoned_streams == 0 and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
        answer = await generator.generate(REQUEST)  # the connection slot was given back
        await generator.close()
    assert behaviour.abandoned_streams == 1 and answer.text == behaviour.reply


# --- through the whole pipeline --------------------------------------------------------------


def test_rag_pipeline_answers_through_tgi(write_config: ConfigWriter) -> None:
    behaviour = Behaviour(reply="Restore with the restore command [1].")
    with serve(behaviour) as url:
        generator = {"type": "tgi", "base_url": url, "api": "generate", "top_k": 10}
        with RAG.from_config(write_config(embedder=HASHING, generator=generator)) as rag:
            rag.ingest()
            answer = rag.query("How do I restore a backup?", top_k=2)
    assert answer.answer == behaviour.reply and answer.generator == f"tgi:{MODEL}"
    inputs = behaviour.requests[0]["inputs"]
    assert inputs.startswith("<|im_start|>system\n") and "How do I restore a backup?" in inputs
