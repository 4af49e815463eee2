"""Streaming over HTTP: POST /query as Server-Sent Events and /v1/chat/completions with
stream=true, read by the official openai SDK and by LangChain's ChatOpenAI."""

from __future__ import annotations

import json

import openai
import pytest
from fastapi.testclient import TestClient
from langchain_openai import ChatOpenAI

from llmops import RAG
from llmops.server import create_app
from tests.conftest import HASHING, ConfigWriter

QUESTION = "How do I restore a backup?"


def events(text: str) -> list[tuple[str, dict[str, object]]]:
    """(event name, data) pairs of an SSE body."""
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields.get("event", "message"), json.loads(fields["data"])))
    return out


def test_query_stream_sends_tokens_then_the_answer_with_sources(client: TestClient) -> None:
    response = client.post("/query", json={"question": QUESTION, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    received = events(response.text)
    names = [name for name, _ in received]
    assert names[-1] == "answer" and set(names[:-1]) == {"token"} and len(names) >= 2
    answer = received[-1][1]
    assert "".join(str(data["text"]) for _, data in received[:-1]) == answer["answer"]
    assert answer["sources"][0]["source"] == "docs/backup.md"  # type: ignore[index]
    assert answer["generator"] == "extractive" and answer["request_id"]


def test_query_stream_errors_before_the_first_token_keep_their_status(
    write_config: ConfigWriter,
) -> None:
    rag = RAG.from_config(write_config(embedder=HASHING))  # never ingested: empty index
    with TestClient(create_app(rag)) as client:
        response = client.post("/query", json={"question": QUESTION, "stream": True})
        assert response.status_code == 503 and "index is empty" in response.json()["detail"]
        bad = client.post(
            "/query", json={"question": QUESTION, "stream": True, "filters": {"a": {"zz": 1}}}
        )
        assert bad.status_code == 400


def test_openai_sdk_streams_text_and_ends_with_sources(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="testapp",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "restore" in text.lower()
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finals) == 1
    extra = finals[0].model_extra or {}
    assert extra["sources"][0]["source"] == "docs/backup.md" and extra["generator"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_sampling_fields_and_extensions_are_accepted(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="testapp",
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0.2,
        top_p=0.9,
        max_tokens=64,
        seed=3,
        stop=["\n\n"],
        extra_body={"top_k": 1, "filters": {"source": "docs/backup.md"}},
    )
    sources = (completion.model_extra or {})["sources"]
    assert [s["source"] for s in sources] == ["docs/backup.md"]


def test_bad_requests_get_openai_shaped_4xx(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="no user message"):
        sdk.chat.completions.create(
            model="testapp", messages=[{"role": "system", "content": "hi"}], stream=True
        )
    with pytest.raises(openai.BadRequestError, match="n > 1"):
        sdk.chat.completions.create(
            model="testapp", messages=[{"role": "user", "content": QUESTION}], n=2
        )


def test_langchain_chat_openai_works_unchanged(client: TestClient) -> None:
    chat = ChatOpenAI(
        model="testapp",
        base_url="http://testserver/v1",
        api_key="unused",  # type: ignore[arg-type]
        http_client=client,
        max_retries=0,
    )
    reply = chat.invoke(QUESTION)
    assert "restore" in str(reply.content).lower()
    streamed = "".join(str(part.content) for part in chat.stream(QUESTION))
    assert streamed == reply.content
