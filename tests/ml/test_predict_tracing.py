"""`POST /predict/{model}` with tracing on: a server span with a ``predict`` child naming the
version and variant that answered, its trace id in X-Trace-ID, and the trace at GET /traces."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmops.model_service import ModelService
from llmops.server.model_app import create_model_app
from tests.ml.test_serving import rows

pytestmark = pytest.mark.slow

TRACING = "monitoring: {tracing: {enabled: true, exporter: none}}\n"


def test_a_prediction_is_a_trace(served_app: Path) -> None:
    config = served_app.with_name("traced.yaml")
    config.write_text(served_app.read_text() + TRACING)
    with TestClient(create_model_app(ModelService.from_config(config))) as client:
        response = client.post("/predict/adult", json={"rows": rows(3)})
        assert response.status_code == 200, response.text
        tree = client.get(f"/traces/{response.headers['x-trace-id']}").json()
    (root,) = tree["spans"]
    assert root["name"] == "POST /predict/{model}" and root["kind"] == "SERVER"
    assert root["attributes"]["llmops.request_id"] == response.json()["request_id"]
    (predict,) = root["children"]
    assert predict["name"] == "predict adult" and predict["parent_id"] == root["span_id"]
    assert predict["attributes"]["llmops.rows"] == 3
    assert predict["attributes"]["llmops.version"] == response.json()["version"]
    assert predict["attributes"]["llmops.variant"] == response.json()["variant"]
