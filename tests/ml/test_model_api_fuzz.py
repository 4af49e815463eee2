"""Schemathesis against a model app's own OpenAPI document (``/predict``, ``/labels``,
``/models``, ``/experiments``, the drift report, ``/metrics``): generated requests, valid and
invalid, never get a server error, and every response matches what the document promises.
Auth is on, every case sending an admin key.
As for the RAG app, "a schema-valid request is accepted" is left out: rows that the schema of
the body allows may still break the model app's rules (a 422 naming row and column)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis

from llmops.model_service import ModelService
from llmops.server.model_app import create_model_app
from tests.ml.conftest import train
from tests.ml.test_train import registry, write_app
from tests.server.test_openapi_fuzz import admin_headers, check_every_operation, key_secret

__all__ = ["key_secret"]  # the module-scoped fixture that sets the server secret

ROUTING = """routing:
  name: fuzz
  strategy: shadow
  variants: {production: {alias: production}, candidate: {alias: candidate}}
  shadow: {variant: candidate}
serving: {max_rows: 20, auth: {enabled: true}}
"""


@pytest.fixture(scope="module")
def api_schema(
    tmp_path_factory: pytest.TempPathFactory, key_secret: None
) -> Iterator[tuple[schemathesis.BaseSchema, dict[str, str]]]:
    root = tmp_path_factory.mktemp("model-fuzz")
    config = write_app(root, trials=1)
    train(config)
    registry(root).promote("adult")
    config.write_text(config.read_text() + ROUTING)
    # schemathesis runs the app's lifespan itself (versions loaded, threads started) on its
    # first call, in its own event loop, and keeps it for the process
    service = ModelService.from_config(config)
    app = create_model_app(service)
    yield schemathesis.openapi.from_asgi("/openapi.json", app), admin_headers(service.data_dir)


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_no_server_errors_and_responses_match_the_document(
    api_schema: tuple[schemathesis.BaseSchema, dict[str, str]], mode: schemathesis.GenerationMode
) -> None:
    schema, headers = api_schema
    expected = {"POST /predict/{model}", "POST /labels", "GET /models/{model}/drift"}
    check_every_operation(schema, mode, expected, examples=60, headers=headers)
