"""An app over the test corpus (real MiniLM, extractive answers) and SDK clients of it."""

from __future__ import annotations

import openai
import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def sdk(client: TestClient) -> openai.OpenAI:
    """The official openai SDK talking to the app in-process (no retries: errors surface)."""
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0
    )
