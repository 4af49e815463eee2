"""API keys on the model app: ``/predict`` and ``/labels`` need the predict scope, ``/models``
and ``/experiments`` the models scope, ``/metrics`` admin; 401 / 403 in the house error shape
with the request id; the refusals are in the OpenAPI document; keys never appear in logs or
error bodies."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmops.access.keys import KeyStore, server_secret
from llmops.model_service import ModelService
from llmops.server.model_app import create_model_app
from tests.ml.test_serving import rows
from tests.server.test_auth import SECRET, bearer, secret

__all__ = ["secret"]  # the autouse fixture that sets the server secret

pytestmark = pytest.mark.slow


@pytest.fixture
def secured(served_app: Path) -> Iterator[tuple[TestClient, KeyStore]]:
    text = served_app.read_text()
    assert "serving: {refresh_s: 0.2, max_rows: 50}" in text
    config = served_app.with_name("secured.yaml")
    config.write_text(
        text.replace("max_rows: 50}", "max_rows: 50, auth: {enabled: true, cache_ttl_s: 0}}")
    )
    service = ModelService.from_config(config)
    keys = KeyStore(service.data_dir, server_secret())
    with TestClient(create_model_app(service)) as client:
        yield client, keys
    keys.close()


def test_routes_need_their_scope(secured: tuple[TestClient, KeyStore]) -> None:
    client, keys = secured
    _, predict = keys.create("predictor", ["predict"])
    _, models = keys.create("watcher", ["models"])
    body = {"rows": rows(2)}
    missing = client.post("/predict/adult", json=body)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert set(missing.json()) == {"detail", "request_id"} and missing.json()["request_id"]
    assert client.post("/predict/adult", json=body, headers=bearer(predict)).status_code == 200
    denied = client.post("/predict/adult", json=body, headers=bearer(models))
    assert denied.status_code == 403 and "'predict'" in denied.json()["detail"]
    labels = {"labels": [{"request_id": "nope", "row": 0, "label": ">50K"}]}
    assert client.post("/labels", json=labels, headers=bearer(models)).status_code == 403
    assert client.post("/labels", json=labels, headers=bearer(predict)).status_code == 404
    assert client.get("/models", headers=bearer(models)).status_code == 200
    assert client.get("/models", headers=bearer(predict)).status_code == 403
    assert client.get("/experiments", headers=bearer(predict)).status_code == 403
    assert client.get("/metrics", headers=bearer(models)).status_code == 403
    assert client.get("/ready").status_code == 200  # probes stay open


def test_refusals_are_documented_on_protected_operations_only(
    secured: tuple[TestClient, KeyStore],
) -> None:
    client, _ = secured
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/predict/{model}", "/labels", "/models", "/metrics"):
        for operation in paths[path].values():
            assert {"401", "403", "429"} <= set(operation["responses"]), path
            assert operation["security"] == [{"apiKey": []}]
    assert "401" not in paths["/ready"]["get"]["responses"]


def test_keys_never_appear_in_logs_or_error_bodies(
    secured: tuple[TestClient, KeyStore], caplog: pytest.LogCaptureFixture
) -> None:
    client, keys = secured
    caplog.set_level(logging.DEBUG)
    info, key = keys.create("secret-holder", ["models"])
    bodies = [
        client.post("/predict/adult", json={"rows": rows(1)}, headers=bearer(key)).text,
        client.post("/predict/adult", json={"rows": rows(1)}, headers=bearer(key + "x")).text,
        client.get("/models", headers=bearer(key[:-2])).text,
    ]
    secret_part = key.split("_", 2)[2]
    for text in [*bodies, caplog.text]:
        assert secret_part not in text and SECRET not in text
    assert info.id in bodies[0]
