"""The retraining loop end to end: shifted traffic → drift alert on the production version →
the training job on the new data → gates against production → canary → promotion; and the two
ways a candidate fails: its gates (rejected) or its canary (rolled back), each with its
reason in ``GET /models``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.model_service import ModelService
from llmops.server.model_app import create_model_app
from tests.ml.adult_like import adult_like
from tests.ml.conftest import train
from tests.ml.test_train import registry, write_app

pytestmark = pytest.mark.slow

RETRAIN = """monitoring:
  drift: {{window: 200, min_rows: 100, check_every: 100, min_interval_s: 0}}
  retrain:
    triggers: [drift]
    cooldown_s: 3600
    data:
      train: {{path: new/adult.data, na_values: ["?"]}}
      test: {{path: new/adult.test, na_values: ["?"]}}
      target_map: {{"<=50K.": "<=50K", ">50K.": ">50K"}}
    gates: [{gates}]
    canary: {{stages: [0.5, 1.0], window: 8, max_p95_ms: {p95}}}
"""


def write_new_data(folder: Path) -> None:
    """Newer rows, older people: what the shifted traffic looks like, labelled."""
    folder.mkdir(parents=True, exist_ok=True)
    adult_like(600, seed=7, min_age=45).fillna("?").to_csv(folder / "adult.data", index=False)
    test = adult_like(300, seed=8, min_age=45)
    test["Y"] = test["Y"] + "."
    test.fillna("?").to_csv(folder / "adult.test", index=False)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    clients: list[TestClient] = []

    def start(gates: str, p95: float = 60000) -> TestClient:
        config = write_app(tmp_path, trials=2)
        train(config)
        registry(tmp_path).promote("adult")
        write_new_data(tmp_path / "new")
        config.write_text(config.read_text() + RETRAIN.format(gates=gates, p95=p95))
        client = TestClient(create_model_app(ModelService.from_config(config)))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def shift(client: TestClient) -> None:
    """200 rows of people aged 60 and over: the production version's drift alert."""
    old = adult_like(200, seed=9, min_age=60).drop(columns=["Y"])
    rows = [{k: (None if v != v else v) for k, v in r.items()} for r in old.to_dict("records")]
    for start in (0, 100):
        response = client.post("/predict/adult", json={"rows": rows[start : start + 100]})
        assert response.status_code == 200, response.text


def wait_for_step(client: TestClient, step: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        retraining = client.get("/models").json()["retraining"]
        found = [s for s in retraining["steps"] if s["step"] == step]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no '{step}' step in {client.get('/models').json()['retraining']}")


def canary_traffic(client: TestClient, requests: int = 40) -> set[int]:
    """One request per user, ``user-0`` first. At the 50 % stage users 0–5 hash to the canary
    and user 6 to production, so a window of 8 canary requests cannot advance the ramp before
    production has served one (a window of 4 could, depending on when it was judged)."""
    row = adult_like(1, seed=3).drop(columns=["Y"]).to_dict("records")[0]
    row = {k: (None if v != v else v) for k, v in row.items()}
    versions = set()
    for user in range(requests):
        headers = {"x-user-id": f"user-{user}"}
        answer = client.post("/predict/adult", json={"rows": [row]}, headers=headers).json()
        versions.add(answer["version"])
    return versions


def test_drift_retrains_gates_canaries_and_promotes(served: Any) -> None:
    client = served('"roc_auc >= production - 0.3"')
    assert client.get("/models").json()["version"] == 1
    shift(client)
    started = wait_for_step(client, "started")
    assert "drift alert on version 1" in started["reason"] and "age" in started["reason"]
    canary = wait_for_step(client, "canary")
    assert canary["version"] == 2 and "passed its gates" in canary["reason"]
    assert client.get("/models").json()["routing"] == "adult-rollout"
    assert canary_traffic(client) == {1, 2}  # both serve during the ramp
    promoted = wait_for_step(client, "promoted", timeout=30)
    assert promoted["version"] == 2 and "advanced" in promoted["reason"]
    status = client.get("/models").json()
    assert status["version"] == 2 and status["routing"] is None
    production = registry(Path(client.app.state.service.loaded.base_dir)).get("adult", "production")  # type: ignore[attr-defined]
    assert production.version == 2
    steps = [s["step"] for s in reversed(status["retraining"]["steps"])]
    assert steps[0] == "started" and steps[-1] == "promoted"
    assert canary_traffic(client, 5) == {2}
    text = client.get("/metrics").text
    assert 'llmops_model_retrain_steps_total{model="adult",step="promoted"} 1.0' in text


def test_a_candidate_failing_its_gates_is_rejected_with_the_reason(served: Any) -> None:
    client = served('"accuracy >= 0.999"')
    shift(client)
    rejected = wait_for_step(client, "rejected")
    assert "accuracy" in rejected["reason"] and "failed its gates" in rejected["reason"]
    status = client.get("/models").json()
    assert status["version"] == 1 and status["routing"] is None
    assert canary_traffic(client, 5) == {1}


def test_a_candidate_failing_its_canary_is_rolled_back_with_the_reason(served: Any) -> None:
    client = served('"roc_auc >= production - 0.3"', p95=0.001)
    shift(client)
    wait_for_step(client, "canary")
    canary_traffic(client)
    rolled_back = wait_for_step(client, "rolled_back", timeout=30)
    assert rolled_back["version"] == 2 and "p95 latency" in rolled_back["reason"]
    status = client.get("/models").json()
    assert status["version"] == 1 and status["routing"] is None
    assert canary_traffic(client, 5) == {1}
