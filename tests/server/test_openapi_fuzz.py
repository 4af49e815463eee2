"""Schemathesis against the app's own OpenAPI document: generated requests, valid and invalid,
on every route (``/v1`` included, with its valid model name from the document's enum) must
never get a server error, and every response must match what the document promises (status
code, content type, headers, body schema; invalid requests must be refused).

Auth is on, as a team exposing the app runs it: every case sends an admin key, and the
401/403 refusals are part of the document (``auth.document_refusals``).

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
from hypothesis import HealthCheck, assume, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import positive_data_acceptance

from llmops import RAG
from llmops.access.keys import KeyStore, server_secret
from llmops.config.auth import BIND_HOST_ENV, SECRET_ENV
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
server: {auth: {enabled: true}}
"""
SECRET = "fuzz-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def key_secret() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SECRET_ENV, SECRET)
        patch.delenv(BIND_HOST_ENV, raising=False)
        yield


def admin_headers(data_dir: Path) -> dict[str, str]:
    """The Authorization header of a new admin key of the app whose data dir is ``data_dir``."""
    keys = KeyStore(data_dir, server_secret())
    try:
        _, key = keys.create("fuzz", ["admin"])
    finally:
        keys.close()
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def api_schema(
    tmp_path_factory: pytest.TempPathFactory, key_secret: None
) -> Iterator[tuple[schemathesis.BaseSchema, dict[str, str]]]:
    root = tmp_path_factory.mktemp("fuzz")
    write_corpus(root / "docs")
    (root / "app.yaml").write_text(CONFIG)
    rag = RAG.from_config(Path(root / "app.yaml"))
    rag.start()
    rag.ingest()
    headers = admin_headers(rag.components.data_dir)
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(rag)), headers
    rag.close()


def key_accepted(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """The admin key sent with every case opens every route: no 401 or 403. (Negative cases
    may leave the bearer scheme's header out on purpose: those must be a 401.)"""
    sent = response.request.headers.get("Authorization", "")
    if sent.startswith("Bearer llmk_"):
        assert response.status_code not in (401, 403), (case.path, response.text)
    else:
        assert response.status_code == 401, (case.path, sent, response.text)


def check_every_operation(
    schema: schemathesis.BaseSchema,
    mode: schemathesis.GenerationMode,
    expected: set[str],
    examples: int = EXAMPLES,
    headers: dict[str, str] | None = None,
) -> int:
    """Generated requests of ``mode`` on every operation of ``schema`` (``expected`` among
    them), each with ``headers``: no server error, every response as documented. Returns the
    number of requests sent (printed by the tests, for docs/benchmarks.md).

    413 is a refusal of invalid data too: a generated body over ``server.max_body_bytes`` is
    refused before it is read (schemathesis's default list of refusals leaves 413 out)."""
    rejection = schema.config.checks.negative_data_rejection
    if "413" not in rejection.expected_statuses:
        rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert expected <= {operation.label for operation in operations}
    sent = 0
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            nonlocal sent
            # a query parameter set to null or to an empty list is not sent at all (the client
            # drops it), so such a negative case reaches the server as a valid request
            negative = mode is schemathesis.GenerationMode.NEGATIVE
            unsent = [v for v in (case.query or {}).values() if v is None or v == []]
            assume(not (negative and unsent))
            sent += 1
            checks = [] if headers is None else [key_accepted]
            case.call_and_validate(
                headers=headers,
                excluded_checks=[positive_data_acceptance],
                additional_checks=checks,
            )

        try:
            check()
        except Unsatisfiable:  # a GET without a body has no invalid request to make
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
            assert operation.method.upper() == "GET", operation.label
    print(f"schemathesis {mode.value}: {sent} requests on {len(operations)} operations, 0 failures")
    return sent


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_no_server_errors_and_responses_match_the_document(
    api_schema: tuple[schemathesis.BaseSchema, dict[str, str]], mode: schemathesis.GenerationMode
) -> None:
    schema, headers = api_schema
    expected = {"POST /query", "POST /v1/chat/completions", "POST /feedback"}
    check_every_operation(schema, mode, expected, headers=headers)
