"""The registry face of a model app: ``GET /models/registry`` lists every version with its
aliases and metrics, the one answering marked; ``POST /models/{model}/promote`` and
``/rollback`` move an alias (admin scope only) and the running server answers with the result
before the route returns (the alias follower here polls once an hour, so nothing else could
have moved it); unknown models, versions and aliases are 404s and bad bodies 422s, with the
reason. The console at /ui shows the models page on a model app, and not on a RAG app."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.access.keys import KeyStore, server_secret
from llmops.errors import RegistryError
from llmops.model_service import ModelService
from llmops.server.auth import scope_for
from llmops.server.model_app import create_model_app
from tests.ml.conftest import train
from tests.ml.test_serving import rows
from tests.ml.test_train import registry, write_app
from tests.server.test_auth import bearer, secret

__all__ = ["secret"]  # the autouse fixture that sets the server secret

pytestmark = pytest.mark.slow

SERVING = "serving: {refresh_s: 3600, max_rows: 50, auth: {enabled: true, cache_ttl_s: 0}}\n"


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1 in production, version 2 the candidate; keys on."""
    root = tmp_path_factory.mktemp("registry-api")
    config = write_app(root, trials=1)
    config.write_text(config.read_text() + SERVING)
    assert [train(config), train(config)] == [1, 2]
    registry(root).promote("adult", "1")
    return config


@dataclass
class Api:
    client: TestClient
    service: ModelService
    admin: dict[str, str]
    models: dict[str, str]
    predict: dict[str, str]

    def served(self) -> dict[str, int]:
        reply = self.client.get("/models/registry", headers=self.models)
        assert reply.status_code == 200, reply.text
        served: dict[str, int] = reply.json()["models"][0]["served"]
        return served

    def versions(self) -> dict[int, dict[str, Any]]:
        reply = self.client.get("/models/registry", headers=self.models).json()
        return {v["version"]: v for v in reply["models"][0]["versions"]}

    def predicted_by(self) -> int:
        reply = self.client.post("/predict/adult", json={"rows": rows(2)}, headers=self.predict)
        assert reply.status_code == 200, reply.text
        version: int = reply.json()["version"]
        return version


@pytest.fixture
def api(two_versions: Path) -> Iterator[Api]:
    service = ModelService.from_config(two_versions)
    keys = KeyStore(service.data_dir, server_secret())
    headers = [bearer(keys.create(scope, [scope])[1]) for scope in ("admin", "models", "predict")]
    with TestClient(create_model_app(service)) as client:
        yield Api(client, service, *headers)
    keys.close()


def test_the_registry_lists_every_version_and_marks_the_one_served(api: Api) -> None:
    reply = api.client.get("/models/registry", headers=api.models)
    assert reply.status_code == 200, reply.text
    (model,) = reply.json()["models"]
    assert (model["name"], model["alias"], model["headline"]) == ("adult", "production", "roc_auc")
    assert model["served"] == {"production": 1}
    assert [v["version"] for v in model["versions"]] == [2, 1]  # newest first
    old, new = model["versions"][1], model["versions"][0]
    assert (old["aliases"], old["served_as"]) == (["production"], ["production"])
    assert (new["aliases"], new["served_as"]) == (["candidate"], [])
    assert new["metrics"]["roc_auc"] == float(new["tags"]["metric.roc_auc"]) >= 0.8
    assert new["run_id"] != old["run_id"] and new["created"] >= old["created"] > 1e9


def test_a_promotion_is_served_before_the_route_answers_and_a_rollback_restores(
    api: Api,
) -> None:
    assert api.predicted_by() == 1
    moved = api.client.post("/models/adult/promote", json={"ref": "candidate"}, headers=api.admin)
    assert moved.status_code == 200, moved.text
    assert moved.json() == {
        "model": "adult", "alias": "production", "version": 2, "before": 1,
        "served": {"production": 2},
    }  # fmt: skip
    assert api.predicted_by() == 2  # at once: the follower would take an hour
    listed = api.versions()
    assert listed[2]["aliases"] == ["candidate", "production"]
    assert listed[2]["served_as"] == ["production"]
    assert (listed[1]["aliases"], listed[1]["served_as"]) == (["previous"], [])

    back = api.client.post("/models/adult/rollback", headers=api.admin)
    assert back.status_code == 200, back.text
    assert back.json() == {
        "model": "adult", "alias": "production", "version": 1, "before": 2,
        "served": {"production": 1},
    }  # fmt: skip
    assert api.predicted_by() == 1
    again = api.client.post("/models/adult/rollback", headers=api.admin)
    assert again.status_code == 404, again.text
    assert "no previous version to roll back to" in again.json()["detail"]


def test_promote_takes_a_version_as_number_or_text_and_any_alias(api: Api) -> None:
    staged = api.client.post(
        "/models/adult/promote", json={"version": "2", "to": "staging"}, headers=api.admin
    )
    assert staged.status_code == 200, staged.text
    assert (staged.json()["version"], staged.json()["before"]) == (2, None)
    assert staged.json()["served"] == {"production": 1}  # the app follows production only
    again = api.client.post(
        "/models/adult/promote", json={"version": 1, "to": "staging"}, headers=api.admin
    )
    assert (again.json()["version"], again.json()["before"]) == (1, 2)
    assert api.versions()[1]["aliases"] == ["production", "staging"]
    assert api.predicted_by() == 1


@pytest.mark.parametrize(
    ("path", "body", "status", "reason"),
    [
        ("/models/churn/promote", {}, 404, "this server serves 'adult'"),
        ("/models/churn/rollback", None, 404, "this server serves 'adult'"),
        ("/models/adult/promote", {"version": 99}, 404, "no version or alias '99'; versions: 2, 1"),
        ("/models/adult/promote", {"ref": "nightly"}, 404, "no version or alias 'nightly'"),
        ("/models/adult/promote", {"version": 1, "ref": "candidate"}, 422, "not both"),
        ("/models/adult/promote", {"to": "latest"}, 422, "reserved by MLflow"),
        ("/models/adult/promote", {"to": "V3"}, 422, "reserved by MLflow"),
        ("/models/adult/promote", {"to": "pro duction"}, 422, '"to"'),
        ("/models/adult/promote", {"version": 0}, 422, '"version"'),
        ("/models/adult/promote", {"version": "03"}, 422, '"version"'),
        ("/models/adult/promote", {"version": True}, 422, '"version"'),
        ("/models/adult/promote", {"colour": "red"}, 422, "colour"),
    ],
)
def test_unknown_names_are_404_and_bad_bodies_422_with_the_reason(
    api: Api, path: str, body: dict[str, Any] | None, status: int, reason: str
) -> None:
    reply = api.client.post(path, json=body, headers=api.admin)
    assert reply.status_code == status, reply.text
    assert reason in reply.text
    assert api.served() == {"production": 1}  # nothing moved


def test_moving_an_alias_needs_the_admin_scope(api: Api) -> None:
    for headers, status in ((api.models, 403), (api.predict, 403), ({}, 401)):
        for path in ("/models/adult/promote", "/models/adult/rollback"):
            reply = api.client.post(path, json={}, headers=headers)
            assert reply.status_code == status, (path, reply.text)
            assert status == 401 or "lacks the scope 'admin'" in reply.json()["detail"]
    assert api.client.get("/models/registry", headers=api.predict).status_code == 403
    assert api.served() == {"production": 1}
    assert scope_for("/models/adult/rollback/") == "admin"
    assert scope_for("/models/registry") == "models"


def test_a_registry_failure_is_a_503_naming_it_never_a_500(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(name: str) -> None:
        raise RegistryError(f"listing the versions of '{name}' at http://mlflow:5000 failed")

    monkeypatch.setattr(api.service.registry, "versions", unreachable)
    listed = api.client.get("/models/registry", headers=api.models)
    assert listed.status_code == 503 and "http://mlflow:5000" in listed.json()["detail"]
    moved = api.client.post("/models/adult/promote", json={}, headers=api.admin)
    assert moved.status_code == 503 and "http://mlflow:5000" in moved.json()["detail"]


def test_the_console_of_a_model_app_has_the_models_page(api: Api) -> None:
    pages = api.client.get("/ui/pages")  # open: the page needs it before a key is typed in
    assert pages.status_code == 200
    assert pages.json() == {"pages": ["models"], "check": "/models"}
    assert api.client.get("/models", headers=api.models).json()["model"] == "adult"
    assert api.client.get("/ui").status_code == 200
    script = api.client.get("/ui/static/models.js")
    assert script.status_code == 200 and "/models/registry" in script.text


def test_the_console_of_a_rag_app_has_no_models_page(client: TestClient) -> None:
    pages = client.get("/ui/pages").json()
    assert "playground" in pages["pages"] and "models" not in pages["pages"]
    assert client.get(pages["check"]).status_code == 200
