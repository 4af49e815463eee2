"""One request policy for every face: limits, strict types, non-finite numbers, request ids and
error shapes, the same on /query, /v1/chat/completions, /feedback, /ingest and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.server import create_app
from tests.conftest import HASHING, ConfigWriter

HUGE = 9223372036854775808


@pytest.fixture
def app_config(write_config: ConfigWriter) -> Path:
    return write_config(embedder=HASHING, monitoring={"request_log": {"enabled": True}})


@pytest.fixture
def rag(app_config: Path) -> Iterator[RAG]:
    rag = RAG.from_config(app_config)
    rag.start()
    rag.ingest()
    yield rag


@pytest.fixture
def client(rag: RAG) -> Iterator[TestClient]:
    with TestClient(create_app(rag), raise_server_exceptions=False) as test_client:
        yield test_client


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "testapp", "messages": [{"role": "user", "content": "restore?"}], **fields}


def raw(client: TestClient, path: str, text: str) -> Any:
    return client.post(path, content=text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/query", {"question": "restore a backup", "top_k": 100000}),
        ("/query", {"question": "restore a backup", "top_k": HUGE}),
        ("/v1/chat/completions", chat(top_k=100000)),
        ("/v1/chat/completions", chat(top_k=HUGE)),
        ("/v1/chat/completions", chat(max_tokens=HUGE)),
        ("/v1/chat/completions", chat(seed=HUGE)),
    ],
)
def test_every_face_holds_the_same_limits(client: TestClient, path: str, body: Any) -> None:
    response = client.post(path, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert "top_k" in response.text or "max_tokens" in response.text or "seed" in response.text


def test_the_question_limit_holds_on_v1_and_nothing_huge_reaches_the_log(
    client: TestClient, rag: RAG
) -> None:
    message = "why " * 245_000  # 980 kB: under the body limit, far over the question limit
    response = client.post(
        "/v1/chat/completions", json=chat(messages=[{"role": "user", "content": message}])
    )
    assert response.status_code == 400
    assert "server.max_question_chars" in response.json()["error"]["message"]
    history = [
        {"role": "user", "content": "x" * 9000},
        {"role": "assistant", "content": "y" * 9000},
    ]
    long_chat = chat(messages=[*history, {"role": "user", "content": "and then?"}])
    assert "max_history_chars" in client.post("/v1/chat/completions", json=long_chat).text
    assert rag.monitor.request_log is not None
    assert rag.monitor.request_log.rows() == []


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/query", '{"question": "x", "top_k": NaN}'),
        ("/query", '{"question": "x", "top_k": Infinity}'),
        ("/query", '{"question": "x", "top_k": 1e400}'),
        ("/query", '{"question": "x", "score_threshold": NaN}'),
        ("/query", '{"question": "x", "temperature": -Infinity}'),
        ("/v1/chat/completions", json.dumps(chat())[:-1] + ', "temperature": NaN}'),
        ("/v1/chat/completions", json.dumps(chat())[:-1] + ', "top_k": 1e400}'),
        ("/feedback", '{"request_id": "x", "reward": NaN}'),
        ("/feedback", '{"request_id": "x", "reward": 1e400}'),
    ],
)
def test_non_finite_numbers_are_a_4xx_json_error_with_the_request_id(
    client: TestClient, path: str, text: str
) -> None:
    response = raw(client, path, text)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    body = response.json()
    assert ("request_id" in body) if not path.startswith("/v1") else ("error" in body)


def test_a_422_never_echoes_a_huge_input_whole(client: TestClient) -> None:
    response = client.post("/query", json={"question": "x", "filters": "f" * 50_000})
    assert response.status_code == 422 and len(response.content) < 2_000
    assert response.json()["detail"][0]["loc"] == ["body", "filters"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/ingest", {"full": "yes"}),
        ("/query", {"question": "restore", "top_k": True}),
        ("/query", {"question": "restore", "top_k": "3"}),
        ("/query", {"question": "restore", "mmr": "false"}),
        ("/query", {"question": "restore", "stream": 1}),
        ("/v1/chat/completions", chat(stream="yes")),
        ("/feedback", {"request_id": "x", "reward": "1"}),
    ],
)
def test_types_are_strict(client: TestClient, path: str, body: Any) -> None:
    response = client.post(path, json=body)
    assert response.status_code == (400 if path.startswith("/v1") else 422), response.text
    assert not client.app.state.jobs  # {"full": "yes"} started no ingestion


def test_an_unexpected_failure_is_a_json_500_with_the_request_id(
    client: TestClient, rag: RAG, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire at /secret/path")

    monkeypatch.setattr(rag, "aquery", broken)
    response = client.post("/query", json={"question": "restore"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert "RuntimeError" in body["detail"] and "/secret/path" not in body["detail"]
    v1 = client.post("/v1/chat/completions", json=chat())
    assert v1.status_code == 500 and v1.json()["error"]["type"] == "api_error"


def test_each_request_keeps_its_own_log_row_whatever_id_the_client_sends(
    client: TestClient, rag: RAG
) -> None:
    ids = []
    for _ in range(2):
        response = client.post(
            "/query", json={"question": "restore a backup"}, headers={"X-Request-ID": "same-id"}
        )
        ids.append(response.json()["request_id"])
        assert response.headers["x-correlation-id"] == "same-id"
    hostile = client.post(
        "/query",
        json={"question": "restore a backup"},
        headers={"X-Request-ID": "<script>\x01" + "a" * 5000},
    )
    assert len(hostile.headers["x-correlation-id"]) <= 128
    assert "<" not in hostile.headers["x-correlation-id"]
    assert rag.monitor.request_log is not None
    rows = rag.monitor.request_log.rows()
    assert len({r["request_id"] for r in rows}) == 3 and {ids[0], ids[1]} <= {
        r["request_id"] for r in rows
    }
    assert [r["correlation_id"] for r in rows][:2] == ["same-id", "same-id"]
    feedback = client.post("/feedback", json={"request_id": ids[0], "thumbs": "up"})
    assert feedback.status_code == 200
    rated = [r for r in rag.monitor.request_log.rows() if r["feedback"] is not None]
    assert [r["request_id"] for r in rated] == [ids[0]]


def test_the_openapi_document_matches_the_api(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    query = spec["paths"]["/query"]["post"]["responses"]
    assert {"400", "413", "422", "503", "5XX"} <= set(query)
    assert query["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    limit = client.post("/query", json={"question": "x" * 5000})
    assert limit.status_code == 400 and isinstance(limit.json()["detail"], str)
    invalid = client.post("/query", json={"question": 42})
    assert invalid.status_code == 422 and isinstance(invalid.json()["detail"], list)
    assert {"404", "503"} <= set(spec["paths"]["/ingest/{job_id}"]["get"]["responses"])
    v1 = spec["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert "4XX" in v1 and "422" not in v1
    model = spec["components"]["schemas"]["ChatRequest"]["properties"]["model"]
    assert model["enum"] == ["testapp"]


def test_v1_errors_have_the_openai_shape_and_sdk_exceptions(client: TestClient) -> None:
    sdk = openai.OpenAI(
        base_url="http://testserver/v1", api_key="x", http_client=client, max_retries=0
    )
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as invalid:
        sdk.chat.completions.create(
            model="testapp", messages=[{"role": "user", "content": "hi"}], extra_body={"top_k": 0}
        )
    assert invalid.value.param == "top_k"
    body = client.post("/v1/chat/completions", json={"model": "testapp"}).json()
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_swagger_ui_is_served_from_the_package_not_a_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn." not in page.text and "unpkg" not in page.text
    assets = [part.split('"')[0] for part in page.text.split('src="')[1:]]
    assets += [part.split('"')[0] for part in page.text.split('href="')[1:]]
    local = [a for a in assets if a.startswith("/docs-assets/")]
    assert any(a.endswith(".js") for a in local) and any(a.endswith(".css") for a in local)
    for asset in local:
        assert client.get(asset).status_code == 200, asset


def test_the_cli_refuses_an_empty_question(app_config: Path, rag: RAG) -> None:
    from typer.testing import CliRunner

    from llmops.cli.main import app

    rag.close()  # the index is built; the CLI opens it itself
    result = CliRunner().invoke(app, ["query", "", "-c", str(app_config)])
    assert result.exit_code != 0 and "the question is empty" in result.output


def test_the_python_api_holds_the_same_limits(rag: RAG) -> None:
    from llmops.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="max_top_k"):
        rag.query("restore a backup", top_k=10_000)
    with pytest.raises(InvalidRequest, match="max_question_chars"):
        rag.query("x" * 5000)
