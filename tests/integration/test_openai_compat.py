"""The openai_compat generator against a local server that follows the OpenAI API."""

from __future__ import annotations

import asyncio
import time

import pytest

from llmops import RAG
from llmops.errors import BackendError
from llmops.generation.openai_compat import OpenAICompatGenerator
from llmops.types import Chunk, GenerationRequest, Message, ScoredChunk
from tests.conftest import HASHING, ConfigWriter
from tests.stubs.openai_server import Behaviour, serve

CONTEXT = [
    ScoredChunk(Chunk("a", "m.pdf#page=2", "Bleed the pump first.", "m.pdf", 0), 0.7),
    ScoredChunk(Chunk("b", "x.md", "Unrelated.", "x.md", 0), 0.2),
]
PROMPT = [Message("system", "Use the context."), Message("user", "How do I start the pump?")]


def _generate(base_url: str, **settings: object) -> object:
    config = OpenAICompatGenerator.Config(
        base_url=base_url, model="tiny", backoff_s=0.01, **settings
    )
    generator = OpenAICompatGenerator(config)

    async def run() -> object:
        await generator.start()
        try:
            return await generator.generate(GenerationRequest("q", tuple(CONTEXT), tuple(PROMPT)))
        finally:
            await generator.close()

    return asyncio.run(run())


def test_answer_usage_citations_and_request_body() -> None:
    behaviour = Behaviour()
    with serve(behaviour) as url:
        result = _generate(url, api_key="sk-test", seed=7, stop=["\n\n"], extra_body={"top_k": 5})
    assert result.text == behaviour.reply and result.cited == (1,) and not result.abstained
    assert result.usage.completion_tokens == 10 and result.usage.prompt_tokens == 9
    body = behaviour.requests[0]
    assert body["model"] == "tiny" and body["seed"] == 7 and body["stop"] == ["\n\n"]
    assert body["top_k"] == 5 and body["messages"][0] == {
        "role": "system",
        "content": "Use the context.",
    }


def test_retries_on_503_and_429_then_succeeds() -> None:
    for status in (503, 429):
        behaviour = Behaviour(fail_times=2, fail_status=status)
        with serve(behaviour) as url:
            result = _generate(url, max_retries=2)
        assert result.cited == (1,) and len(behaviour.requests) == 3


def test_client_errors_are_not_retried() -> None:
    behaviour = Behaviour(fail_times=5, fail_status=400)
    with serve(behaviour) as url, pytest.raises(BackendError, match="HTTP 400"):
        _generate(url, max_retries=3)
    assert len(behaviour.requests) == 1


def test_a_stalled_server_times_out_instead_of_hanging() -> None:
    behaviour = Behaviour(delay_s=3.0)
    with serve(behaviour) as url:
        started = time.perf_counter()
        with pytest.raises(BackendError, match=r"no answer within 0\.2s"):
            _generate(url, timeout_s=0.2, max_retries=1)
        waited = time.perf_counter() - started
    assert waited < 3.0 and len(behaviour.requests) == 2  # gave up; did not wait the 3 s out


def test_dead_server_is_a_connection_error() -> None:
    with pytest.raises(
        BackendError, match=r"cannot connect to 127\.0\.0\.1:\d+ \(connection refused\)"
    ):
        _generate("http://127.0.0.1:9/v1", max_retries=0)


def test_declining_answer_is_marked_abstained() -> None:
    with serve(Behaviour(reply="I don't know based on the provided documents.")) as url:
        result = _generate(url)
    assert result.abstained and result.cited == ()


def test_rag_pipeline_with_an_llm_backend(write_config: ConfigWriter) -> None:
    behaviour = Behaviour(reply="Restore with the restore command [1].")
    with serve(behaviour) as url:
        config = write_config(
            embedder=HASHING,
            generator={"type": "openai_compat", "base_url": url, "model": "tiny"},
        )
        with RAG.from_config(config) as rag:
            rag.ingest()
            answer = rag.query("How do I restore a backup?", top_k=2)
    assert answer.answer == behaviour.reply and answer.generator == "openai_compat:tiny"
    assert [s.cited for s in answer.sources] == [True, False]
    user_prompt = behaviour.requests[0]["messages"][1]["content"]
    assert (
        "[1] (source: docs/backup.md" in user_prompt and "How do I restore a backup?" in user_prompt
    )


def test_dead_backend_is_a_503_with_the_reason_over_http(write_config: ConfigWriter) -> None:
    from fastapi.testclient import TestClient

    from llmops.server import create_app

    generator = {
        "type": "openai_compat",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "tiny",
        "max_retries": 0,
    }
    rag = RAG.from_config(write_config(embedder=HASHING, generator=generator))
    rag.start()
    rag.ingest()
    with TestClient(create_app(rag)) as client:
        response = client.post("/query", json={"question": "How do I restore a backup?"})
    assert response.status_code == 503
    assert "cannot connect to" in response.json()["detail"]


def _fallback_config(write_config: ConfigWriter, primary: dict[str, object]) -> object:
    return write_config(
        embedder=HASHING, generator=primary, fallbacks=[{"type": "extractive", "min_score": 0.0}]
    )


def test_dead_backend_falls_back_and_says_which_generator_served(
    write_config: ConfigWriter,
) -> None:
    primary = {
        "type": "openai_compat",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "tiny",
        "max_retries": 0,
    }
    with RAG.from_config(_fallback_config(write_config, primary)) as rag:
        rag.ingest()
        answer = rag.query("How do I restore a backup?")
    assert answer.generator == "extractive" and "restore" in answer.answer.lower()


def test_stalled_backend_times_out_then_falls_back(write_config: ConfigWriter) -> None:
    behaviour = Behaviour(delay_s=3.0)
    with serve(behaviour) as url:
        primary = {
            "type": "openai_compat",
            "base_url": url,
            "model": "tiny",
            "timeout_s": 0.2,
            "max_retries": 0,
        }
        with RAG.from_config(_fallback_config(write_config, primary)) as rag:
            rag.ingest()
            started = time.perf_counter()
            answer = rag.query("How do I restore a backup?")
            waited = time.perf_counter() - started
    assert answer.generator == "extractive" and waited < 3.0


def test_healthy_backend_serves_without_fallback(write_config: ConfigWriter) -> None:
    with serve(Behaviour(reply="Use the restore command [1].")) as url:
        primary = {"type": "openai_compat", "base_url": url, "model": "tiny"}
        with RAG.from_config(_fallback_config(write_config, primary)) as rag:
            rag.ingest()
            answer = rag.query("How do I restore a backup?")
    assert answer.generator == "openai_compat:tiny"


def test_fallback_entries_are_validated(write_config: ConfigWriter) -> None:
    from llmops.build import load_config
    from llmops.errors import ConfigError

    config = write_config(fallbacks=[{"type": "extractiv"}])
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    (issue,) = caught.value.issues
    assert issue.path == "fallbacks.0.type" and "did you mean 'extractive'" in issue.hint


def test_gateway_mode_passes_the_conversation_through(write_config: ConfigWriter) -> None:
    import openai
    from fastapi.testclient import TestClient

    from llmops.server import create_app

    behaviour = Behaviour(reply="Hello there.")
    with serve(behaviour) as url:
        generator = {"type": "openai_compat", "base_url": url, "model": "tiny"}
        rag = RAG.from_config(write_config(embedder=HASHING, generator=generator))
        with TestClient(create_app(rag)) as client:  # never ingested: no index needed
            sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="x", http_client=client)
            messages = [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "How are you?"},
            ]
            completion = sdk.chat.completions.create(
                model="testapp",
                messages=messages,  # type: ignore[arg-type]
                temperature=0.5,
                extra_body={"retrieval": False},
            )
    assert completion.choices[0].message.content == "Hello there."
    assert (completion.model_extra or {})["sources"] == []
    sent = behaviour.requests[0]
    assert sent["messages"] == messages and sent["temperature"] == 0.5
