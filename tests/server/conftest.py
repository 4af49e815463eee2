"""An app over the test corpus (real MiniLM, extractive answers) and SDK clients of it."""

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
    """The official openai SDK talking to the app in-process (no retries: errors surface)."""
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0
    )
