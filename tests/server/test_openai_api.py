"""Our OpenAI-compatible API, driven by the official openai SDK."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.server import create_app
from tests.conftest import ConfigWriter


@pytest.fixture
def client(write_config: ConfigWriter) -> Iterator[TestClient]:
    rag = RAG.from_config(write_config())
    rag.start()
    rag.ingest()
    with TestClient(create_app(rag)) as test_client:
        yield test_client


@pytest.fixture
def sdk(client: TestClient) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)


def test_models_lists_the_app(sdk: openai.OpenAI) -> None:
    assert [m.id for m in sdk.models.list()] == ["testapp"]


def test_chat_completion_answers_the_last_user_message_with_sources(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="testapp",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What does the team edition cost?"},
            {"role": "assistant", "content": "..."},
            {"role": "user", "content": "How do I restore a backup?"},
        ],
        temperature=0,
    )
    message = completion.choices[0].message
    assert message.role == "assistant" and "restore" in (message.content or "").lower()
    extra = completion.model_extra or {}
    assert extra["sources"][0]["source"] == "docs/backup.md"
    assert extra["generator"] == "extractive" and completion.model == "testapp"


def test_unknown_model_and_streaming_are_clear_4xx(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="model 'gpt-4' not found"):
        sdk.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="stream=true is not supported yet"):
        sdk.chat.completions.create(
            model="testapp", messages=[{"role": "user", "content": "hi"}], stream=True
        )
