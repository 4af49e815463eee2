"""Backend faults seen through the HTTP API: down, slow, 500, malformed JSON, a stream cut off,
and a client that goes away mid-stream. Each ends in a clear error or the fallback's answer
within the configured timeout; nothing hangs and the server keeps serving."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.server import create_app
from tests.conftest import HASHING, ConfigWriter
from tests.server.test_streaming import QUESTION, events
from tests.stubs.openai_server import Behaviour, serve, serve_app


def _config(write_config: ConfigWriter, url: str, **settings: Any) -> Path:
    generator = {"type": "openai_compat", "base_url": url, "model": "tiny", "backoff_s": 0.01}
    return write_config(embedder=HASHING, generator={**generator, **settings})


def _client(config: Path) -> TestClient:
    rag = RAG.from_config(config)
    rag.start()
    rag.ingest()
    return TestClient(create_app(rag))


@pytest.fixture
def backend() -> Iterator[tuple[Behaviour, str]]:
    behaviour = Behaviour()
    with serve(behaviour) as url:
        yield behaviour, url


def test_backend_down_is_503_with_the_reason_on_both_apis(write_config: ConfigWriter) -> None:
    with _client(_config(write_config, "http://127.0.0.1:9/v1", max_retries=0)) as client:
        response = client.post("/query", json={"question": QUESTION, "stream": True})
        detail = response.json()["detail"]
        assert response.status_code == 503
        assert "cannot connect to 127.0.0.1:9 (connection refused)" in detail, detail
        assert "Error(" not in detail and "ConnectionKey" not in detail  # words, not reprs
        sdk = openai.OpenAI(
            base_url="http://testserver/v1", api_key="x", http_client=client, max_retries=0
        )
        with pytest.raises(openai.InternalServerError, match="cannot connect") as caught:
            sdk.chat.completions.create(
                model="testapp", messages=[{"role": "user", "content": QUESTION}], stream=True
            )
        assert caught.value.status_code == 503
        assert client.get("/health").status_code == 200


def test_slow_backend_times_out_within_the_limit(
    write_config: ConfigWriter, backend: tuple[Behaviour, str]
) -> None:
    behaviour, url = backend
    behaviour.delay_s = 3.0
    with _client(_config(write_config, url, timeout_s=0.3, max_retries=0)) as client:
        response = client.post("/query", json={"question": QUESTION})
    # the backend would answer after 3 s: a 503 naming the limit means it was not waited for
    assert response.status_code == 503 and "no answer within 0.3s" in response.json()["detail"]


def test_a_500_is_retried_and_then_answered(
    write_config: ConfigWriter, backend: tuple[Behaviour, str]
) -> None:
    behaviour, url = backend
    behaviour.fail_times, behaviour.fail_status = 1, 500
    with _client(_config(write_config, url, max_retries=2)) as client:
        response = client.post("/query", json={"question": QUESTION, "stream": True})
    assert response.status_code == 200 and events(response.text)[-1][0] == "answer"
    assert len(behaviour.requests) == 2


def test_malformed_json_is_a_clear_503(
    write_config: ConfigWriter, backend: tuple[Behaviour, str]
) -> None:
    behaviour, url = backend
    behaviour.malformed = True
    with _client(_config(write_config, url)) as client:
        response = client.post("/query", json={"question": QUESTION})
    assert response.status_code == 503 and "not JSON" in response.json()["detail"]


def test_a_stream_cut_off_ends_with_an_error_event(
    write_config: ConfigWriter, backend: tuple[Behaviour, str]
) -> None:
    behaviour, url = backend
    behaviour.cut_after_tokens = 3
    with _client(_config(write_config, url)) as client:
        response = client.post("/query", json={"question": QUESTION, "stream": True})
        assert response.status_code == 200
        received = events(response.text)
        assert [name for name, _ in received] == ["token"] * 3 + ["error"]
        assert "ended before the answer was finished" in str(received[-1][1]["detail"])
        sdk = openai.OpenAI(
            base_url="http://testserver/v1", api_key="x", http_client=client, max_retries=0
        )
        stream = sdk.chat.completions.create(
            model="testapp", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        with pytest.raises(openai.APIError, match="ended before the answer was finished"):
            list(stream)
        assert client.post("/query", json={"question": QUESTION}).status_code == 200  # still up


def test_fallback_answers_a_stream_when_the_backend_is_down(write_config: ConfigWriter) -> None:
    generator = {"type": "openai_compat", "base_url": "http://127.0.0.1:9/v1", "model": "tiny"}
    config = write_config(
        embedder=HASHING,
        generator={**generator, "max_retries": 0},
        fallbacks=[{"type": "extractive", "min_score": 0.0}],
    )
    with _client(config) as client:
        response = client.post("/query", json={"question": QUESTION, "stream": True})
    assert response.status_code == 200
    answer = events(response.text)[-1][1]
    assert answer["generator"] == "extractive" and "restore" in str(answer["answer"]).lower()


def test_client_leaving_mid_stream_cancels_the_backend_request(
    write_config: ConfigWriter, backend: tuple[Behaviour, str]
) -> None:
    behaviour, url = backend
    behaviour.reply = " ".join(f"word{i}" for i in range(200))
    behaviour.token_delay_s = 0.05
    rag = RAG.from_config(_config(write_config, url))
    rag.start()
    rag.ingest()
    with serve_app(create_app(rag)) as server:
        with httpx.stream(
            "POST", f"{server}/query", json={"question": QUESTION, "stream": True}, timeout=10
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    break  # the first token arrived; hang up
        deadline = time.time() + 5
        while behaviour.abandoned_streams == 0 and time.time() < deadline:
            time.sleep(0.05)
        assert behaviour.abandoned_streams == 1
        assert httpx.get(f"{server}/health", timeout=5).status_code == 200


def test_one_deadline_covers_retries_then_the_fallback_answers(
    write_config: ConfigWriter, backend: tuple[Behaviour, str]
) -> None:
    """Each attempt may wait timeout_s (5 s) and there are 3 retries: without one deadline per
    request the backend saw four attempts (over 15 s); with server.request_timeout_s 1.5 the
    first attempt is cut at the deadline, no retry starts and the extractive fallback answers."""
    behaviour, url = backend
    behaviour.delay_s = 30.0
    generator = {"type": "openai_compat", "base_url": url, "model": "tiny"}
    config = write_config(
        embedder=HASHING,
        generator={**generator, "timeout_s": 5, "max_retries": 3, "backoff_s": 0.1},
        fallbacks=[{"type": "extractive", "min_score": 0.0}],
        server={"request_timeout_s": 1.5},
    )
    with _client(config) as client:
        response = client.post("/query", json={"question": QUESTION})
    assert response.status_code == 200 and response.json()["generator"] == "extractive"
    assert len(behaviour.requests) == 1, behaviour.requests


def test_without_a_fallback_the_deadline_is_a_503_saying_so(
    write_config: ConfigWriter, backend: tuple[Behaviour, str]
) -> None:
    behaviour, url = backend
    behaviour.fail_times, behaviour.fail_status = 1000, 503
    config = _config(write_config, url, max_retries=10, backoff_s=0.4)
    config.write_text(config.read_text() + "server: {request_timeout_s: 1.0}\n")
    with _client(config) as client:
        response = client.post("/query", json={"question": QUESTION})
    # eleven attempts without the deadline; the backoff (0.4 s, doubling) fits few in 1 s
    assert response.status_code == 503 and "deadline" in response.json()["detail"]
    assert len(behaviour.requests) < 6


def test_a_client_that_goes_away_cancels_the_backend_retries(
    write_config: ConfigWriter, backend: tuple[Behaviour, str]
) -> None:
    behaviour, url = backend
    behaviour.fail_times, behaviour.fail_status, behaviour.delay_s = 1000, 503, 0.2
    rag = RAG.from_config(_config(write_config, url, max_retries=8, backoff_s=0.3))
    rag.start()
    rag.ingest()
    with serve_app(create_app(rag)) as server:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server}/query", json={"question": QUESTION}, timeout=0.5)
        time.sleep(3.0)  # unattended, the retries would have gone on: 4+ backend calls by now
        assert len(behaviour.requests) <= 3, len(behaviour.requests)
        assert httpx.get(f"{server}/health", timeout=5).status_code == 200


def test_a_fallback_answer_still_logs_and_counts_the_primary_failure(
    write_config: ConfigWriter, caplog: pytest.LogCaptureFixture
) -> None:
    generator = {"type": "openai_compat", "base_url": "http://127.0.0.1:9/v1", "model": "tiny"}
    config = write_config(
        embedder=HASHING,
        generator={**generator, "max_retries": 0},
        fallbacks=[{"type": "extractive", "min_score": 0.0}],
    )
    with _client(config) as client, caplog.at_level("WARNING"):
        response = client.post("/query", json={"question": QUESTION})
        metrics = client.get("/metrics").text
    assert response.status_code == 200 and response.json()["generator"] == "extractive"
    assert any(
        "cannot connect" in r.getMessage() and "falling back to extractive" in r.getMessage()
        for r in caplog.records
    )
    errors = [
        line
        for line in metrics.splitlines()
        if line.startswith("llmops_errors_total") and 'kind="BackendError"' in line
    ]
    assert errors and float(errors[0].rsplit(" ", 1)[1]) == 1.0
