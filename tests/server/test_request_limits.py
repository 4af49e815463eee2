"""Request limits on every route: a walk over the app's OpenAPI document finds every input of
every operation bounded, tries each limit the app's config sets (each must be refused with a
4xx naming it), and sends every operation that takes a body one byte too many."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.config.schema import ServerConfig
from llmops.rag.filters import MAX_DEPTH
from llmops.server import create_app
from llmops.server.schemas import FILTERS_LIMIT
from tests.conftest import HASHING, write_corpus
from tests.server.openapi_limits import LIMIT, post_operations, walk

SERVER = {"max_question_chars": 50, "max_messages": 4, "max_top_k": 5, "max_body_bytes": 4096}
EXPERIMENT = {
    "name": "limits",
    "strategy": "weighted",
    "variants": {"a": {}, "b": {}},
    "weights": {"a": 50, "b": 50},
}
FILTERS = str(FILTERS_LIMIT[LIMIT])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("limits")
    write_corpus(root / "docs")
    config = {
        "name": "limitapp",
        "data_dir": "data",
        "sources": [{"path": "docs"}],
        "embedder": HASHING,
        "server": SERVER,
        "experiment": EXPERIMENT,
    }
    (root / "app.yaml").write_text(yaml.safe_dump(config))
    rag = RAG.from_config(root / "app.yaml")
    rag.start()
    rag.ingest()
    with TestClient(create_app(rag), raise_server_exceptions=False) as test_client:
        yield test_client
    rag.close()


def nested_filter(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": "a.md"}
    for _ in range(depth - 1):
        spec = {"and": [spec]}
    return spec


def chat(messages: int = 1, **fields: Any) -> dict[str, Any]:
    turns = [{"role": "user", "content": "restore?"}] * messages
    return {"model": "limitapp", "messages": turns, **fields}


Request = tuple[str, dict[str, Any], str]
"""The path, a body over the limit, and what the refusal must say."""
LIMITS = ServerConfig(**SERVER)
OVER: dict[tuple[str, str], Callable[[], Request]] = {
    ("POST /query", "server.max_question_chars"): lambda: (
        "/query",
        {"question": "x" * (LIMITS.max_question_chars + 1)},
        "server.max_question_chars",
    ),
    ("POST /query", "server.max_top_k"): lambda: (
        "/query",
        {"question": "restore?", "top_k": LIMITS.max_top_k + 1},
        "server.max_top_k",
    ),
    ("POST /query", FILTERS): lambda: (
        "/query",
        {"question": "restore?", "filters": nested_filter(MAX_DEPTH + 1)},
        f"deeper than {MAX_DEPTH} levels",
    ),
    ("POST /v1/chat/completions", "server.max_messages"): lambda: (
        "/v1/chat/completions",
        chat(messages=LIMITS.max_messages + 1),
        "server.max_messages",
    ),
    ("POST /v1/chat/completions", "server.max_top_k"): lambda: (
        "/v1/chat/completions",
        chat(top_k=LIMITS.max_top_k + 1),
        "server.max_top_k",
    ),
    ("POST /v1/chat/completions", FILTERS): lambda: (
        "/v1/chat/completions",
        chat(filters=nested_filter(MAX_DEPTH + 1)),
        f"deeper than {MAX_DEPTH} levels",
    ),
}


def test_every_input_of_every_operation_is_bounded(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    found = walk(document)
    assert found.unbounded == []
    assert found.limits == set(OVER), "each limit the document names has a request over it here"


@pytest.mark.parametrize("operation", sorted(OVER), ids=" ".join)
def test_each_config_limit_is_refused_with_its_name(
    client: TestClient, operation: tuple[str, str]
) -> None:
    path, body, says = OVER[operation]()
    assert len(str(body)) < SERVER["max_body_bytes"], "the body limit would refuse it first"
    response = client.post(path, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert says in response.text


def test_every_operation_with_a_body_refuses_one_byte_over_the_limit(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    paths = post_operations(document)
    assert {"/query", "/v1/chat/completions", "/feedback", "/ingest"} <= set(paths)
    body = b'{"x": "' + b"y" * SERVER["max_body_bytes"] + b'"}'
    for path in paths:
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 413, (path, response.text)
        assert f"larger than {SERVER['max_body_bytes']} bytes" in response.text
