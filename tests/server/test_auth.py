"""API keys on the HTTP app: 401 / 403 / 200 by scope, the OpenAI SDK's api_key, revoked and
expired keys, 429 with RateLimit headers, keys never in logs or error bodies, and `llmops up`
refusing a non-loopback address without keys."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from llmops import RAG
from llmops.access.keys import KeyStore, server_secret
from llmops.cli.main import app as cli
from llmops.config.auth import BIND_HOST_ENV, SECRET_ENV, RateLimits
from llmops.server import create_app
from tests.conftest import HASHING, ConfigWriter

SECRET = "test-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    # `llmops up` sets it for its workers: restored (unset) after each test of this module
    monkeypatch.setenv(BIND_HOST_ENV, "")


def serve(config: Path) -> Iterator[tuple[TestClient, KeyStore]]:
    rag = RAG.from_config(config)
    rag.start()
    rag.ingest()
    keys = KeyStore(rag.components.data_dir, server_secret())
    with TestClient(create_app(rag)) as client:
        yield client, keys


@pytest.fixture
def secured(write_config: ConfigWriter) -> Iterator[tuple[TestClient, KeyStore]]:
    auth = {"enabled": True, "cache_ttl_s": 0, "limits": {"requests_per_minute": 600}}
    yield from serve(write_config(embedder=HASHING, server={"auth": auth}))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


QUESTION = {"question": "How do I restore a backup?"}


def test_keys_are_off_on_loopback_by_default(write_config: ConfigWriter) -> None:
    for client, _ in serve(write_config(embedder=HASHING)):
        assert client.post("/query", json=QUESTION).status_code == 200


def test_no_key_or_a_bad_key_is_401_and_a_missing_scope_403(
    secured: tuple[TestClient, KeyStore],
) -> None:
    client, keys = secured
    missing = client.post("/query", json=QUESTION)
    assert missing.status_code == 401 and missing.json()["request_id"]
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    _, key = keys.create("reader", ["query"])
    wrong = key[:-4] + "AAAA"
    assert client.post("/query", json=QUESTION, headers=bearer(wrong)).status_code == 401
    answered = client.post("/query", json=QUESTION, headers=bearer(key))
    assert answered.status_code == 200
    assert answered.headers["RateLimit-Limit"] == "600"
    refused = client.post("/ingest", headers=bearer(key))
    assert refused.status_code == 403 and "'ingest'" in refused.json()["detail"]
    assert client.get("/metrics", headers=bearer(key)).status_code == 403
    assert client.get("/health").status_code == 200  # probes stay open
    assert client.get("/openapi.json").status_code == 200


def test_refusals_are_in_the_openapi_document_of_protected_operations(
    secured: tuple[TestClient, KeyStore], write_config: ConfigWriter
) -> None:
    client, _ = secured
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/query", "/feedback", "/ingest", "/stats", "/metrics"):
        for operation in paths[path].values():
            responses = operation["responses"]
            assert {"401", "403", "429"} <= set(responses), path
            assert responses["401"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"
            }
    assert "401" not in paths["/health"]["get"]["responses"]
    assert "4XX" in paths["/v1/chat/completions"]["post"]["responses"]  # OpenAI's shape
    for open_client, _ in serve(write_config(embedder=HASHING)):  # keys off: not documented
        assert (
            "401"
            not in open_client.get("/openapi.json").json()["paths"]["/query"]["post"]["responses"]
        )


def test_openai_sdk_api_key_works_and_a_bad_one_is_refused(
    secured: tuple[TestClient, KeyStore],
) -> None:
    client, keys = secured
    _, key = keys.create("sdk", ["query"])
    sdk = openai.OpenAI(
        base_url="http://testserver/v1", api_key=key, http_client=client, max_retries=0
    )
    completion = sdk.chat.completions.create(
        model="testapp", messages=[{"role": "user", "content": "How do I restore a backup?"}]
    )
    assert completion.model == "testapp" and completion.choices[0].message.content
    bad = openai.OpenAI(
        base_url="http://testserver/v1", api_key="nope", http_client=client, max_retries=0
    )
    with pytest.raises(openai.AuthenticationError, match="invalid, revoked or expired"):
        bad.models.list()


def test_revoked_and_expired_keys_are_refused(secured: tuple[TestClient, KeyStore]) -> None:
    client, keys = secured
    info, key = keys.create("gone", ["query"])
    assert client.post("/query", json=QUESTION, headers=bearer(key)).status_code == 200
    keys.revoke(info.id)
    assert client.post("/query", json=QUESTION, headers=bearer(key)).status_code == 401
    _, old = keys.create("old", ["query"], expires=time.time() - 1)
    assert client.post("/query", json=QUESTION, headers=bearer(old)).status_code == 401
    rotated_from, _ = keys.create("rotating", ["query"])
    new_info, new_key = keys.rotate(rotated_from.id)
    assert client.post("/query", json=QUESTION, headers=bearer(new_key)).status_code == 200
    assert keys.get(rotated_from.id).revoked is not None and new_info.id != rotated_from.id


def test_rate_limit_is_429_with_retry_after(write_config: ConfigWriter) -> None:
    auth = {"enabled": True, "limits": {"requests_per_minute": 2}}
    for client, keys in serve(write_config(embedder=HASHING, server={"auth": auth})):
        _, key = keys.create("slow", ["query"])
        statuses = [client.get("/stats", headers=bearer(key)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        refused = client.get("/stats", headers=bearer(key))
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["RateLimit-Remaining"] == "0"


def refusals(client: TestClient, admin: str) -> dict[tuple[str, str], float]:
    """``llmops_access_refusals`` by (reason, mode), read from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics", headers=bearer(admin)).text
    family = next(
        f for f in text_string_to_metric_families(text) if f.name == "llmops_access_refusals"
    )
    return {
        (s.labels["reason"], s.labels["mode"]): s.value
        for s in family.samples
        if s.name.endswith("_total")
    }


def test_shadow_mode_admits_over_the_limit_and_counts_it(write_config: ConfigWriter) -> None:
    auth = {"enabled": True, "shadow": True, "limits": {"requests_per_minute": 1}}
    for client, keys in serve(write_config(embedder=HASHING, server={"auth": auth})):
        _, key = keys.create("shadowed", ["query"])
        assert [client.get("/stats", headers=bearer(key)).status_code for _ in range(3)] == [
            200
        ] * 3
        _, admin = keys.create("ops", ["admin"], limits=RateLimits(requests_per_minute=100))
        assert client.get("/stats").status_code == 401
        counted = refusals(client, admin)
        assert counted[("rate", "shadow")] == 2 and counted[("missing_key", "enforced")] == 1


def statuses(client: TestClient, key: str, n: int) -> list[int]:
    return [client.get("/stats", headers=bearer(key)).status_code for _ in range(n)]


def test_a_key_of_its_own_limits_replaces_the_apps(write_config: ConfigWriter) -> None:
    auth = {"enabled": True, "cache_ttl_s": 0, "limits": {"requests_per_minute": 2}}
    for client, keys in serve(write_config(embedder=HASHING, server={"auth": auth})):
        _, plain = keys.create("plain", ["query"])
        big, premium = keys.create("premium", ["query"], limits=RateLimits(requests_per_minute=5))

        assert statuses(client, plain, 3) == [200, 200, 429]
        assert statuses(client, premium, 6) == [200] * 5 + [429]
        assert client.get("/stats", headers=bearer(premium)).headers["RateLimit-Limit"] == "5"
        one = keys.set_limits(big.id, RateLimits(concurrent=1))  # rpm back to the app's 2
        assert one.effective_limits(RateLimits(requests_per_minute=2)) == RateLimits(
            requests_per_minute=2, concurrent=1
        )
        _, admin = keys.create("ops", ["admin"], limits=RateLimits(requests_per_minute=100))
        assert refusals(client, admin)[("rate", "enforced")] == 3  # the header check's too
        assert keys.get(big.id).last_used is not None  # stored on first use


def test_security_scheme_is_bearer_on_protected_operations(
    secured: tuple[TestClient, KeyStore],
) -> None:
    client, _ = secured
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert document["paths"]["/query"]["post"]["security"] == [{"apiKey": []}]
    assert document["paths"]["/v1/chat/completions"]["post"]["security"] == [{"apiKey": []}]
    assert "security" not in document["paths"]["/health"]["get"]


def test_keys_never_appear_in_logs_or_error_bodies(
    secured: tuple[TestClient, KeyStore], caplog: pytest.LogCaptureFixture
) -> None:
    client, keys = secured
    caplog.set_level(logging.DEBUG)
    info, key = keys.create("secret-holder", ["feedback"])
    bodies = [
        client.post("/query", json=QUESTION, headers=bearer(key)).text,
        client.post("/query", json=QUESTION, headers=bearer(key + "x")).text,
        client.post("/v1/chat/completions", json={}, headers=bearer(key + "x")).text,
    ]
    secret_part = key.split("_", 2)[2]
    for text in [*bodies, caplog.text]:
        assert secret_part not in text and SECRET not in text
    assert info.id in bodies[0]  # the id is what names a key


def test_no_file_the_app_writes_holds_a_key_or_the_server_secret(
    write_config: ConfigWriter,
) -> None:
    """The request log, the key store and everything else under the data dir, byte by byte."""
    auth = {"enabled": True, "cache_ttl_s": 0}
    config = write_config(
        embedder=HASHING, server={"auth": auth}, monitoring={"request_log": {"enabled": True}}
    )
    for client, keys in serve(config):
        _, key = keys.create("logged", ["query", "feedback"])
        answer = client.post("/query", json=QUESTION, headers=bearer(key))
        chat = {"model": "testapp", "messages": [{"role": "user", "content": "restore?"}]}
        assert client.post("/v1/chat/completions", json=chat, headers=bearer(key)).is_success
        assert client.post("/query", json=QUESTION, headers=bearer(key + "x")).status_code == 401
        feedback = {"request_id": answer.headers["X-Request-ID"], "thumbs": "up"}
        assert client.post("/feedback", json=feedback, headers=bearer(key)).is_success
        data_dir = Path(client.app.state.rag.components.data_dir)  # type: ignore[attr-defined]
        request_log = client.app.state.rag.monitor.request_log  # type: ignore[attr-defined]
        request_log.flush()
        assert len(request_log.rows()) == 2  # the two answers are in the scanned file
    logged = data_dir / "requests.sqlite"
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert logged in files and (data_dir / "keys.sqlite") in files
    secret_part = key.split("_", 2)[2].encode()
    for path in files:
        content = path.read_bytes()
        assert secret_part not in content and SECRET.encode() not in content, path


def test_missing_secret_is_a_clear_startup_error(
    write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV)
    rag = RAG.from_config(write_config(embedder=HASHING, server={"auth": {"enabled": True}}))
    with pytest.raises(Exception, match=f"{SECRET_ENV} is not set"):
        create_app(rag)


def test_up_on_all_interfaces_without_keys_refuses_unless_insecure(
    write_config: ConfigWriter,
) -> None:
    config = write_config(embedder=HASHING, server={"auth": {"enabled": False}})
    result = CliRunner().invoke(cli, ["up", str(config), "--host", "0.0.0.0", "--no-ingest"])
    assert result.exit_code == 1
    assert "refusing to serve 0.0.0.0 without API keys" in result.output
    assert "--insecure" in result.output


def test_keys_cli_creates_lists_revokes_and_rotates(write_config: ConfigWriter) -> None:
    config = str(write_config(embedder=HASHING))
    runner = CliRunner(env={"COLUMNS": "200"})  # the list's table on one line per key
    created = runner.invoke(cli, ["keys", "create", config, "--scopes", "query,feedback",
                                  "--name", "bot", "--expires", "30d"])  # fmt: skip
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    key_id = key.split("_")[1]
    listed = runner.invoke(cli, ["keys", "list", config])
    assert key_id in listed.output and "active" in listed.output and key not in listed.output
    assert "the app's" in listed.output
    limited = runner.invoke(cli, ["keys", "limits", config, key_id, "--rpm", "30"])
    assert limited.exit_code == 0 and "requests_per_minute=30" in limited.output, limited.output
    assert "requests_per_minute=30" in runner.invoke(cli, ["keys", "list", config]).output
    rotated = runner.invoke(cli, ["keys", "rotate", config, key_id])
    assert rotated.exit_code == 0 and "llmk_" in rotated.output
    assert "revoked" in runner.invoke(cli, ["keys", "list", config]).output
    bad = runner.invoke(cli, ["keys", "create", config, "--scopes", "everything"])
    assert bad.exit_code == 1 and "query, feedback" in bad.output


def test_cors_allows_listed_origins_only_and_preflights_need_no_key(
    write_config: ConfigWriter,
) -> None:
    origin = "https://console.example.com"
    auth = {"enabled": True, "cache_ttl_s": 0}
    config = write_config(
        embedder=HASHING, server={"auth": auth, "cors": {"allow_origins": [origin]}}
    )
    for client, keys in serve(config):
        preflight = client.options(
            "/query",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"},
        )  # fmt: skip
        assert preflight.status_code == 200, preflight.text  # answered before the key check
        assert preflight.headers["access-control-allow-origin"] == origin
        _, key = keys.create("console", ["query"])
        answer = client.post("/query", json=QUESTION, headers={**bearer(key), "Origin": origin})
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == origin
        other = client.post(
            "/query", json=QUESTION, headers={**bearer(key), "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
    for client, _ in serve(write_config(embedder=HASHING)):  # default: no CORS headers at all
        plain = client.post("/query", json=QUESTION, headers={"Origin": origin})
        assert "access-control-allow-origin" not in plain.headers


def test_credentials_with_any_origin_is_a_config_error(write_config: ConfigWriter) -> None:
    from llmops.errors import ConfigError

    cors = {"allow_origins": ["*"], "allow_credentials": True}
    with pytest.raises(ConfigError, match="allow_credentials"):
        RAG.from_config(write_config(embedder=HASHING, server={"cors": cors}))
