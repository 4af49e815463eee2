"""The ollama generator (official ``ollama`` client) against a local server that follows
Ollama's published API: request mapping, usage, a model that is not pulled, and faults."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from pydantic import ValidationError

from llmops import RAG
from llmops.errors import BackendError
from llmops.generation.ollama import OllamaGenerator
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
from tests.stubs.ollama_server import Behaviour, serve

CONTEXT = (
    ScoredChunk(Chunk("a", "m.pdf#page=2", "Bleed the pump first.", "m.pdf", 0), 0.7),
    ScoredChunk(Chunk("b", "x.md", "Unrelated.", "x.md", 0), 0.2),
)
PROMPT = (Message("system", "Use the context."), Message("user", "How do I start the pump?"))
REQUEST = GenerationRequest("How do I start the pump?", CONTEXT, PROMPT)
DEAD = "http://127.0.0.1:9"


@asynccontextmanager
async def started(host: str, **settings: object) -> AsyncIterator[OllamaGenerator]:
    config = OllamaGenerator.Config(host=host, model="tiny", backoff_s=0.01, **settings)
    generator = OllamaGenerator(config)
    await generator.start()
    try:
        yield generator
    finally:
        await generator.close()


async def test_keeps_the_generator_contract() -> None:
    with serve(Behaviour(reply="Stop the server, then restore [1].")) as url:
        config = OllamaGenerator.Config(host=url, model="tiny")
        answer = await check_generator(OllamaGenerator(config))
    assert answer.generator == "ollama:tiny" and answer.cited == (1,)
    assert answer.usage.completion_tokens == 6


async def test_request_maps_sampling_options_and_keep_alive() -> None:
    behaviour = Behaviour()
    settings = {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "seed": 7,
        "stop": ["\n\n"],
        "keep_alive": "10m",
        "options": {"num_ctx": 8192, "repeat_penalty": 1.1, "top_k": 20},
    }
    with serve(behaviour) as url:
        async with started(url, **settings) as generator:
            await generator.generate(REQUEST)
    body = behaviour.requests[0]
    assert body["options"] == {
        "num_ctx": 8192,
        "repeat_penalty": 1.1,
        "top_k": 20,
        "temperature": 0.2,
        "top_p": 0.9,
        "num_predict": 64,
        "seed": 7,
        "stop": ["\n\n"],
    }
    assert body["model"] == "tiny" and body["keep_alive"] == "10m" and body["stream"] is True
    assert body["messages"] == [{"role": m.role, "content": m.content} for m in PROMPT]
    assert behaviour.ignored == []  # nothing Ollama would drop with a warning
    headers = behaviour.headers[0]
    assert headers["user-agent"].startswith("ollama-python/")
    assert headers["content-type"] == "application/json"


async def test_a_request_overrides_sampling_and_max_tokens_caps_the_answer() -> None:
    behaviour = Behaviour()
    request = GenerationRequest(
        REQUEST.question, CONTEXT, PROMPT, GenerationOptions(temperature=0.7, max_tokens=3)
    )
    with serve(behaviour) as url:
        async with started(url, temperature=0.0, keep_alive=-1) as generator:
            result = await generator.generate(request)
    options = behaviour.requests[0]["options"]
    assert options["temperature"] == 0.7 and options["num_predict"] == 3
    assert behaviour.requests[0]["keep_alive"] == -1
    assert result.text == "The pump must" and result.usage.completion_tokens == 3


async def test_usage_comes_from_the_final_chunk() -> None:
    behaviour = Behaviour()
    with serve(behaviour) as url:
        async with started(url) as generator:
            result = await generator.generate(REQUEST)
    assert result.text == behaviour.reply and result.cited == (1,) and not result.abstained
    assert result.usage.prompt_tokens == 9 and result.usage.completion_tokens == 10


async def test_a_model_that_is_not_pulled_fails_at_start() -> None:
    with serve(Behaviour(models=("qwen2.5:7b",))) as url:
        generator = OllamaGenerator(OllamaGenerator.Config(host=url, model="llama3.2"))
        with pytest.raises(BackendError) as caught:
            await generator.start()
    assert caught.value.reason == (
        f"model 'llama3.2' is not pulled on {url}: run `ollama pull llama3.2` "
        "(pulled there: qwen2.5:7b)"
    )


async def test_a_model_removed_after_start_fails_at_generate_without_retries() -> None:
    behaviour = Behaviour()
    with serve(behaviour) as url:
        async with started(url, max_retries=3) as generator:
            behaviour.models = ()  # `ollama rm tiny` while we run
            with pytest.raises(BackendError) as caught:
                await generator.generate(REQUEST)
    assert caught.value.reason == f"model 'tiny' is not pulled on {url}: run `ollama pull tiny`"
    assert len(behaviour.requests) == 1


@pytest.mark.parametrize(
    ("configured", "pulled"),
    [
        ("tiny", "tiny:latest"),
        ("Tiny:Latest", "tiny:latest"),
        ("library/tiny", "tiny:latest"),
        ("registry.ollama.ai/library/tiny:latest", "tiny:latest"),
        ("hf.co/org/tiny-GGUF:Q4_K_M", "hf.co/org/tiny-GGUF:Q4_K_M"),
    ],
)
async def test_model_names_match_as_ollama_resolves_them(configured: str, pulled: str) -> None:
    with serve(Behaviour(models=(pulled,))) as url:
        generator = OllamaGenerator(OllamaGenerator.Config(host=url, model=configured))
        await generator.start()
        await generator.close()


async def test_a_tag_is_not_the_same_model() -> None:
    with serve(Behaviour(models=("tiny:7b",))) as url:
        generator = OllamaGenerator(OllamaGenerator.Config(host=url, model="tiny"))
        with pytest.raises(BackendError, match="not pulled"):
            await generator.start()


async def test_a_server_that_is_down_fails_at_start() -> None:
    generator = OllamaGenerator(OllamaGenerator.Config(host=DEAD, model="tiny"))
    with pytest.raises(BackendError, match=r"connection failed: cannot reach Ollama at http://"):
        await generator.start()
    await generator.close()


async def test_a_server_that_went_down_fails_the_request() -> None:
    with serve(Behaviour()) as url:
        config = OllamaGenerator.Config(host=url, model="tiny", max_retries=1, backoff_s=0.01)
        generator = OllamaGenerator(config)
        await generator.start()
    try:
        with pytest.raises(BackendError, match="connection failed"):
            await generator.generate(REQUEST)
    finally:
        await generator.close()


async def test_a_stalled_server_times_out_instead_of_hanging() -> None:
    behaviour = Behaviour(delay_s=2.0)
    with serve(behaviour) as url:
        async with started(url, timeout_s=0.3, max_retries=1) as generator:
            begun = time.perf_counter()
            with pytest.raises(BackendError, match=r"no answer within 0\.3s"):
                await generator.generate(REQUEST)
            waited = time.perf_counter() - begun
    assert waited < 1.5 and len(behaviour.requests) == 2  # retried once, never waited 2 s


async def test_a_stream_that_stalls_after_its_first_piece_fails_without_retry() -> None:
    behaviour = Behaviour(token_delay_s=3.0)
    with serve(behaviour) as url:
        async with started(url, timeout_s=0.3, max_retries=2) as generator:
            pieces: list[str | Generation] = []
            with pytest.raises(BackendError, match=r"the stream stalled: nothing for 0\.3s"):
                async for item in generator.stream(REQUEST):
                    pieces.append(item)
    assert pieces == ["The"] and len(behaviour.requests) == 1


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_transient_errors_are_retried_then_succeed(status: int) -> None:
    behaviour = Behaviour(fail_times=2, fail_status=status)
    with serve(behaviour) as url:
        async with started(url, max_retries=2) as generator:
            result = await generator.generate(REQUEST)
    assert result.text == behaviour.reply and len(behaviour.requests) == 3


async def test_retries_give_up_with_the_servers_reason() -> None:
    behaviour = Behaviour(fail_times=5, fail_status=500)
    with serve(behaviour) as url:
        async with started(url, max_retries=1) as generator:
            with pytest.raises(BackendError, match="HTTP 500: llama runner process has termin"):
                await generator.generate(REQUEST)
    assert len(behaviour.requests) == 2


async def test_a_bad_request_is_not_retried() -> None:
    behaviour = Behaviour(fail_times=5, fail_status=400)
    with serve(behaviour) as url:
        async with started(url, max_retries=3) as generator:
            with pytest.raises(BackendError, match="HTTP 400"):
                await generator.generate(REQUEST)
    assert len(behaviour.requests) == 1


async def test_malformed_json_is_a_clear_error() -> None:
    behaviour = Behaviour(malformed=True)
    with serve(behaviour) as url:
        async with started(url, max_retries=2) as generator:
            with pytest.raises(BackendError, match="malformed reply"):
                await generator.generate(REQUEST)
    assert len(behaviour.requests) == 1


async def test_a_stream_cut_off_before_done_is_an_error_after_its_pieces() -> None:
    behaviour = Behaviour(cut_after_tokens=3)
    with serve(behaviour) as url:
        async with started(url) as generator:
            pieces: list[str | Generation] = []
            with pytest.raises(BackendError, match="cut off before the answer was finished"):
                async for item in generator.stream(REQUEST):
                    pieces.append(item)
            with pytest.raises(BackendError, match="cut off"):
                await generator.generate(REQUEST)
    assert pieces == ["The", " pump", " must"]


async def test_an_error_line_inside_the_stream_is_reported() -> None:
    behaviour = Behaviour(error_after_tokens=2)
    with serve(behaviour) as url:
        async with started(url) as generator:
            with pytest.raises(BackendError, match="the server reported: llama runner process"):
                await generator.generate(REQUEST)


async def test_abandoning_a_stream_closes_the_servers_stream() -> None:
    behaviour = Behaviour(token_delay_s=0.2)
    with serve(behaviour) as url:
        async with started(url) as generator:
            stream = generator.stream(REQUEST)
            assert await anext(stream) == "The"
            await stream.aclose()
            # Wait without yielding to the event loop: only a close done inside aclose() itself,
            # not one left to garbage collection (a later loop turn), reaches the server now.
            deadline = time.monotonic() + 3
            while behaviour.abandoned_streams == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert behaviour.abandoned_streams == 1
            behaviour.token_delay_s = 0.0
            again = await generator.generate(REQUEST)  # the concurrency slot was released
    assert again.text == behaviour.reply


def test_config_checks_keep_alive_and_options() -> None:
    assert OllamaGenerator.Config(model="m", keep_alive="300").keep_alive == 300
    assert OllamaGenerator.Config(model="m", keep_alive="1h30m").keep_alive == "1h30m"
    with pytest.raises(ValidationError, match="'5 minutes' is not a duration"):
        OllamaGenerator.Config(model="m", keep_alive="5 minutes")
    with pytest.raises(ValidationError, match="set 'max_tokens' on the generator"):
        OllamaGenerator.Config(model="m", options={"num_predict": 5})
    with pytest.raises(ValidationError, match="set 'temperature' on the generator"):
        OllamaGenerator.Config(model="m", options={"temperature": 0.5})


def test_the_fake_streams_by_default_as_ollama_does() -> None:
    """Ollama streams when ``stream`` is absent; the fake must too, or tests would lie."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    with serve(Behaviour()) as url, httpx.Client(base_url=url) as client:
        streamed = client.post("/api/chat", json=body)
        whole = client.post("/api/chat", json={**body, "stream": False})
        missing = client.post("/api/show", json={"model": "nope"})
    lines = [json.loads(line) for line in streamed.text.splitlines()]
    assert streamed.headers["content-type"] == "application/x-ndjson"
    assert [line["done"] for line in lines] == [False] * 10 + [True]
    assert whole.json()["message"]["content"] == Behaviour().reply and whole.json()["done"]
    assert missing.status_code == 404 and missing.json() == {"error": "model 'nope' not found"}


def test_rag_pipeline_answers_with_ollama(write_config: ConfigWriter) -> None:
    behaviour = Behaviour(reply="Restore with the restore command [1].")
    with serve(behaviour) as url:
        generator = {"type": "ollama", "host": url, "model": "tiny", "keep_alive": "5m"}
        with RAG.from_config(write_config(embedder=HASHING, generator=generator)) as rag:
            rag.ingest()
            answer = rag.query("How do I restore a backup?", top_k=2)
    assert answer.answer == behaviour.reply and answer.generator == "ollama:tiny"
    assert answer.usage.completion_tokens == 6
    assert "How do I restore a backup?" in behaviour.requests[0]["messages"][-1]["content"]
