"""Schemathesis against the app's own OpenAPI document: generated requests, valid and invalid,
on every route (``/v1`` included, with its valid model name from the document's enum) must
never get a server error, and every response must match what the document promises (status
code, content type, headers, body schema; invalid requests must be refused).

One check is left out: "a schema-valid request is accepted". The API refuses some requests the
schema cannot describe: a filter naming an unknown operator, a ``top_k`` over the app's
``server.max_top_k``, feedback for an unknown request id. Those get a documented 4xx.

The operations are driven through Hypothesis directly (``as_strategy``) rather than the
``schema.parametrize`` pytest plugin, whose fixture support reads a private pytest attribute
that pytest 9 no longer has."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import positive_data_acceptance

from llmops import RAG
from llmops.server import create_app
from tests.conftest import write_corpus

EXAMPLES = 100
CONFIG = """name: fuzzapp
data_dir: data
sources: [{path: docs, include: ['**/*.md', '**/*.txt']}]
embedder: {type: hashing}
experiment:
  name: fuzz
  strategy: weighted
  variants: {a: {}, b: {retrieval: {top_k: 3}}}
  weights: {a: 50, b: 50}
"""


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    root = tmp_path_factory.mktemp("fuzz")
    write_corpus(root / "docs")
    (root / "app.yaml").write_text(CONFIG)
    rag = RAG.from_config(Path(root / "app.yaml"))
    rag.start()
    rag.ingest()
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(rag))
    rag.close()


def check_every_operation(
    schema: schemathesis.BaseSchema,
    mode: schemathesis.GenerationMode,
    expected: set[str],
    examples: int = EXAMPLES,
) -> None:
    """Generated requests of ``mode`` on every operation of ``schema`` (``expected`` among
    them): no server error, every response as documented."""
    operations = [result.ok() for result in schema.get_all_operations()]
    assert expected <= {operation.label for operation in operations}
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Unsatisfiable:  # a GET without a body has no invalid request to make
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
            assert operation.method.upper() == "GET", operation.label


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_no_server_errors_and_responses_match_the_document(
    api_schema: schemathesis.BaseSchema, mode: schemathesis.GenerationMode
) -> None:
    expected = {"POST /query", "POST /v1/chat/completions", "POST /feedback"}
    check_every_operation(api_schema, mode, expected)
