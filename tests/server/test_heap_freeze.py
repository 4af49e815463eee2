"""`llmops up` serves one app per process, so once the app has started what loading left is
frozen out of the garbage collector's full passes (``llmops.server.heap``); an app made for
another caller (tests, an embedding program) leaves the collector alone."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.server import create_app
from tests.conftest import HASHING, ConfigWriter


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.parametrize("freeze", [True, False])
def test_the_started_apps_heap_is_frozen_only_when_asked(
    write_config: ConfigWriter, unfrozen: None, freeze: bool
) -> None:
    rag = RAG.from_config(write_config(embedder=HASHING))
    rag.ingest()
    with TestClient(create_app(rag, freeze_heap=freeze)) as client:
        assert (gc.get_freeze_count() > 10_000) is freeze  # every module, model and index
        response = client.post("/query", json={"question": "How do I restore a backup?"})
        assert response.status_code == 200
