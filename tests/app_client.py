"""``client``: the app over the test corpus in-process (keys off): real MiniLM, extractive
answers, the request log on. Folders that need another app define their own ``client``."""

from __future__ import annotations

from collections.abc import Iterator

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
