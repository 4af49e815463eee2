"""GET /evals, /evals/{run}, /evals/compare and /evals/{run}/report on an app with API keys on,
over two real eval runs of the tiny corpus: what they return, the ``eval`` scope, the report's
headers, and the refusals (unknown or unfinished run 404, names that are no run or lead out of
the runs folder 4xx, never 500)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.access.keys import KeyStore, server_secret
from llmops.config.auth import BIND_HOST_ENV, SECRET_ENV
from llmops.evaluation.run_folder import MANIFEST
from llmops.evaluation.runs import compare_runs
from llmops.server import create_app
from llmops.server.auth import scope_for
from tests.conftest import write_corpus
from tests.eval_runs_data import APP, FAILING, two_runs

SECRET = "evals-secret-0123456789abcdef"
UNFINISHED = "tiny-20990101-000000-000000"


@dataclass
class Served:
    client: TestClient
    headers: dict[str, str]  # an eval-scoped key
    others: dict[str, str]  # a key with the query and models scopes
    runs: list[Path]  # oldest first


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("evalsapp")
    write_corpus(root / "docs")
    app = root / "app.yaml"
    sources = [{"path": "docs", "include": ["**/*.md", "**/*.txt"]}]
    auth = {"auth": {"enabled": True, "cache_ttl_s": 0}}
    app.write_text(
        json.dumps({"name": "evals", "data_dir": "data", "sources": sources, "server": auth, **APP})
    )
    runs = two_runs(app)
    (root / "runs" / UNFINISHED).mkdir()
    (root / "runs" / UNFINISHED / MANIFEST).write_text('{"suite": "tiny"}')
    shutil.copytree(runs[0], root / "elsewhere")  # a run outside the runs folder, linked in
    (root / "runs" / "linked").symlink_to(root / "elsewhere", target_is_directory=True)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SECRET_ENV, SECRET)
        env.delenv(BIND_HOST_ENV, raising=False)
        rag = RAG.from_config(app)
        rag.start()
        keys = KeyStore(rag.components.data_dir, server_secret())
        _, key = keys.create("evals", ["eval"])
        _, other = keys.create("reader", ["query", "models"])
        with TestClient(create_app(rag)) as client:
            yield Served(client, _bearer(key), _bearer(other), runs)
        keys.close()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def get(served: Served, path: str, **params: str) -> tuple[int, dict]:
    response = served.client.get(path, params=params, headers=served.headers)
    return response.status_code, response.json()


def test_the_routes_need_the_eval_scope(served: Served) -> None:
    for path in ("/evals", "/evals/compare", "/evals/x", "/evals/x/report"):
        assert scope_for(path) == "eval"
    assert served.client.get("/evals").status_code == 401
    refused = served.client.get("/evals", headers=served.others)
    assert refused.status_code == 403 and "'eval'" in refused.json()["detail"]


def test_list_shows_each_run_with_its_gates(served: Served) -> None:
    first, second = served.runs
    status, body = get(served, "/evals")
    assert status == 200 and body["folder"] == "runs" and body["count"] == 3
    by_name = {run["run"]: run for run in body["runs"]}
    assert set(by_name) == {first.name, second.name, UNFINISHED}  # the link is left out
    assert by_name[second.name]["gates"] == {"passed": 4, "failed": 2}
    assert by_name[first.name]["passed"] is True and by_name[UNFINISHED]["finished"] is False
    assert get(served, "/evals", limit="1")[1]["runs"] == body["runs"][:1]
    assert get(served, "/evals", limit="0")[0] == 422
    assert get(served, "/evals", limt="5")[0] == 422  # a misspelt parameter is not ignored


def test_one_run_with_metrics_gates_and_its_report(served: Served) -> None:
    second = served.runs[1]
    status, run = get(served, f"/evals/{second.name}")
    assert status == 200 and run["passed"] is False
    failed = [g for g in run["variants"]["baseline"]["gates"] if not g["passed"]]
    assert [(g["gate"], g["op"], g["threshold"]) for g in failed] == [(FAILING, ">=", 0.99)]
    summary = json.loads((second / "summary.json").read_text())
    assert run["variants"]["short"]["metrics"] == summary["variants"]["short"]["metrics"]
    assert run["report_url"] == f"/evals/{second.name}/report"
    report = served.client.get(run["report_url"], headers=served.headers)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert report.text == (second / "report.html").read_text()
    policy = report.headers["content-security-policy"]
    assert "sandbox" in policy and "default-src 'none'" in policy
    assert report.headers["x-content-type-options"] == "nosniff"


def test_two_runs_compared(served: Served) -> None:
    first, second = served.runs
    status, body = get(served, "/evals/compare", base=first.name, head=second.name)
    assert status == 200 and (body["base"], body["head"]) == (first.name, second.name)
    expected = compare_runs(first, second)
    assert body["metrics"] == {m: c.as_dict() for m, c in expected.items()}
    status, short = get(
        served, "/evals/compare", base=first.name, head=second.name, variant="short"
    )
    assert status == 200 and short["variant"] == "short"
    status, error = get(served, "/evals/compare", base=first.name, head=second.name, variant="x")
    assert status == 400 and "no variant 'x'" in error["detail"]


def test_unknown_and_unfinished_runs_are_404_saying_why(served: Served) -> None:
    first = served.runs[0]
    status, body = get(served, "/evals/tiny-19990101-000000-000000")
    assert status == 404 and "no eval run 'tiny-19990101-000000-000000' in runs" in body["detail"]
    status, body = get(served, f"/evals/{UNFINISHED}")
    assert status == 404 and "not finished" in body["detail"] and "--resume" in body["detail"]
    assert get(served, f"/evals/{UNFINISHED}/report")[0] == 404
    status, body = get(served, "/evals/compare", base=first.name, head=UNFINISHED)
    assert status == 404 and "not finished" in body["detail"]


def test_paths_out_of_the_runs_folder_are_refused(served: Served) -> None:
    status, body = get(served, "/evals/linked")
    assert status == 400 and "symbolic link out of runs" in body["detail"]
    assert get(served, "/evals/linked/report")[0] == 400
    for path in ("/evals/..%2F..%2Fapp.yaml", "/evals/%2e%2e/report", "/evals/.hidden"):
        response = served.client.get(path, headers=served.headers)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert "sources" not in response.text  # not the app config's content
    for base in ("../runs", "/etc/passwd", "a b"):
        status, _ = get(served, "/evals/compare", base=base, head=served.runs[0].name)
        assert status == 422
    assert get(served, "/evals/compare", base=served.runs[0].name)[0] == 422  # no head
    twice = f"/evals/compare?base={served.runs[0].name}&head=x&head=y"
    assert served.client.get(twice, headers=served.headers).status_code == 422
