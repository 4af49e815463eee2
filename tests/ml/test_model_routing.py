"""Routing among registered versions (sticky A/B, shadow, canary, Thompson rewarded by labels),
``POST /labels`` joined to the prediction log with live metrics per version, and drift of the
served rows per version with Evidently's report."""

from __future__ import annotations

import re
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
from tests.ml.test_serving import rows
from tests.ml.test_train import registry, write_app

pytestmark = pytest.mark.slow
DRIFT = (
    "monitoring: {{drift: {{window: 200, min_rows: 100, check_every: {every}, "
    "min_interval_s: 0}}}}\n"
)


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """adult 1 in production, adult 2 the candidate."""
    root = tmp_path_factory.mktemp("routing")
    config = write_app(root, trials=2)
    train(config)
    registry(root).promote("adult")
    train(config)
    return config


def app_with(base: Path, name: str, extra: str) -> Path:
    """A copy of the model app with ``extra`` YAML appended: its own data_dir (prediction
    log, routing state), the registry of ``base``."""
    shared = (base.parent / "state" / "mlflow.db").resolve()
    text = base.read_text().replace("data_dir: state", f"data_dir: state-{name}")
    config = base.parent / f"{name}.yaml"
    config.write_text(text + f"registry: {{tracking_uri: 'sqlite:///{shared}'}}\n" + extra)
    return config


@pytest.fixture
def client_for(two_versions: Path) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(name: str, extra: str) -> TestClient:
        service = ModelService.from_config(app_with(two_versions, name, extra))
        client = TestClient(create_model_app(service))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def metric(client: TestClient, name: str, **labels: str) -> float | None:
    text = client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_labels_join_predictions_and_feed_live_metrics(client_for: Any) -> None:
    client = client_for("labels", "monitoring: {drift: {enabled: false}}\n")
    frame = adult_like(40, seed=11)
    truth = frame.pop("Y").tolist()
    batch = [{k: (None if v != v else v) for k, v in r.items()} for r in frame.to_dict("records")]
    answer = client.post("/predict/adult", json={"rows": batch}).json()
    request_id = answer["request_id"]
    labels = [{"request_id": request_id, "row": i, "label": y} for i, y in enumerate(truth)]
    joined = client.post("/labels", json={"labels": [*labels, {"request_id": "nope", "label": 1}]})
    assert joined.status_code == 200, joined.text
    assert joined.json() == {"joined": 40, "unknown": [{"request_id": "nope", "row": 0}]}
    hits = sum(p["label"] == y for p, y in zip(answer["predictions"], truth, strict=True))
    live = client.get("/models").json()["variants"]["production"]["live"]
    assert live["labelled"] == 40 and live["accuracy"] == pytest.approx(hits / 40)
    assert 0 <= live["roc_auc"] <= 1
    assert metric(client, "llmops_model_live_metric", version="1", metric="accuracy") == (
        pytest.approx(hits / 40)
    )
    assert metric(client, "llmops_model_labels_total", version="1") == 40
    # nothing joins: 404 with the reason; malformed bodies: 422
    unknown = client.post("/labels", json={"labels": [{"request_id": "x", "label": "<=50K"}]})
    assert unknown.status_code == 404 and "no logged prediction" in unknown.json()["detail"]
    for bad in ({"labels": []}, {"labels": [{"request_id": "x"}]}, {"labels": [{"row": -1}]}):
        assert client.post("/labels", json=bad).status_code == 422


def test_weighted_routing_keeps_a_user_on_one_version(client_for: Any) -> None:
    client = client_for(
        "ab",
        "routing:\n  name: ab\n  strategy: weighted\n  weights: {production: 50, candidate: 50}\n"
        "  variants: {production: {alias: production}, candidate: {alias: candidate}}\n",
    )
    seen: dict[str, set[int]] = {}
    for user in range(30):
        for _ in range(2):
            answer = client.post(
                "/predict/adult", json={"rows": rows(1)}, headers={"x-user-id": f"u{user}"}
            ).json()
            seen.setdefault(f"u{user}", set()).add(answer["version"])
            assert answer["alias"] == answer["variant"]
    assert all(len(versions) == 1 for versions in seen.values())  # sticky
    assert set().union(*seen.values()) == {1, 2}  # both versions serve
    report = client.get("/experiments").json()
    assert sum(v["requests"] for v in report["variants"].values()) == 60


def test_shadow_version_predicts_every_request_in_the_background(client_for: Any) -> None:
    client = client_for(
        "shadow",
        "routing:\n  name: sh\n  strategy: shadow\n  shadow: {variant: candidate}\n"
        "  variants: {production: {alias: production}, candidate: {alias: candidate}}\n",
    )
    answers = []
    for seed in range(6):
        answer = client.post("/predict/adult", json={"rows": rows(5, seed)}).json()
        assert answer["version"] == 1  # the shadow never answers
        answers.append(answer)
    deadline = time.time() + 30
    while time.time() < deadline:
        shadow = client.get("/experiments").json()["variants"]["candidate"]["shadow"]
        if shadow["runs"] == 6:
            break
        time.sleep(0.1)
    assert shadow["runs"] == 6 and shadow["errors"] == 0
    assert 0 <= shadow["mean_agreement"] <= 1
    assert metric(client, "llmops_shadow_runs_total", variant="candidate", outcome="ok") == 6
    # labels reach the shadow's predictions too: both versions get live metrics
    labels = [
        {"request_id": a["request_id"], "row": i, "label": "<=50K"}
        for a in answers
        for i in range(5)
    ]
    assert client.post("/labels", json={"labels": labels}).json()["joined"] == 30
    variants = client.get("/models").json()["variants"]
    for variant in ("production", "candidate"):
        assert variants[variant]["live"]["labelled"] == 30, variants


def test_canary_ramps_up_on_healthy_windows_and_rolls_back_on_slow_ones(client_for: Any) -> None:
    ramp = (
        "routing:\n  name: {name}\n  strategy: canary\n"
        "  canary: {{variant: candidate, stages: [0.5, 1.0], window: 4, max_p95_ms: {p95}}}\n"
        "  variants: {{production: {{alias: production}}, candidate: {{alias: candidate}}}}\n"
    )
    healthy = client_for("canary-ok", ramp.format(name="c1", p95=60000))
    for user in range(40):
        headers = {"x-user-id": f"user-{user}"}
        healthy.post("/predict/adult", json={"rows": rows(1)}, headers=headers)
    canary = healthy.get("/experiments").json()["variants"]["candidate"]["canary"]
    assert canary["share"] == 1.0 and not canary["rolled_back"], canary
    # one move (0.5 -> 1.0), not one per canary request that filled a window
    moves = "llmops_canary_moves_total"
    assert metric(healthy, moves, variant="candidate", move="advanced") == 1
    slow = client_for("canary-slow", ramp.format(name="c2", p95=0.001))
    versions = set()
    for user in range(40):
        headers = {"x-user-id": f"user-{user}"}
        answer = slow.post("/predict/adult", json={"rows": rows(1)}, headers=headers).json()
        versions.add(answer["version"])
    canary = slow.get("/experiments").json()["variants"]["candidate"]["canary"]
    assert canary["rolled_back"] and "p95 latency" in canary["reason"], canary
    assert metric(slow, moves, variant="candidate", move="rolled_back_p95_latency") == 1
    assert metric(slow, moves, variant="candidate", move="advanced") is None
    after = [
        slow.post("/predict/adult", json={"rows": rows(1)}, headers={"x-user-id": f"n{i}"})
        for i in range(10)
    ]
    assert {a.json()["version"] for a in after} == {1}  # rolled back: production only


def test_thompson_sampling_is_rewarded_by_labels(client_for: Any) -> None:
    client = client_for(
        "bandit",
        "routing:\n  name: ts\n  strategy: thompson\n"
        "  variants: {production: {alias: production}, candidate: {alias: candidate}}\n",
    )
    frame = adult_like(30, seed=21)
    truth = frame.pop("Y").tolist()
    for i, record in enumerate(frame.to_dict("records")):
        row = {k: (None if v != v else v) for k, v in record.items()}
        answer = client.post("/predict/adult", json={"rows": [row]}).json()
        label = {"request_id": answer["request_id"], "label": truth[i]}
        assert client.post("/labels", json={"labels": [label]}).status_code == 200
    report = client.get("/experiments").json()["variants"]
    assert sum(v["rewards"] for v in report.values()) == 30
    for variant in report.values():
        if variant["rewards"]:
            assert 0 <= variant["mean_reward"] <= 1


def test_drift_of_a_shifted_slice_is_flagged_per_version_with_a_report(client_for: Any) -> None:
    client = client_for(
        "drift",
        "monitoring: {drift: {window: 200, min_rows: 100, check_every: 50, min_interval_s: 0}}\n",
    )
    old = adult_like(200, seed=31, min_age=60).drop(columns=["Y"])
    batch = [{k: (None if v != v else v) for k, v in r.items()} for r in old.to_dict("records")]
    for start in range(0, 200, 50):
        client.post("/predict/adult", json={"rows": batch[start : start + 50]})
    deadline = time.time() + 30
    drift = None
    while time.time() < deadline:
        drift = client.get("/models").json()["variants"]["production"]["drift"]
        if drift and drift["rows"] == 200:
            break
        time.sleep(0.1)
    assert drift is not None and drift["detected"] and "age" in drift["drifted"], drift
    assert metric(client, "llmops_model_drift_detected", version="1", column="age") == 1.0
    report = client.get("/models/adult/drift")
    assert report.status_code == 200 and "<html" in report.text.lower()
    assert re.search(r"age", report.text)
    assert client.get("/models/adult/drift", params={"version": 99}).status_code == 404


def test_unshifted_traffic_raises_no_drift(client_for: Any) -> None:
    client = client_for(
        "nodrift",
        "monitoring: {drift: {window: 200, min_rows: 100, check_every: 100, min_interval_s: 0}}\n",
    )
    same = adult_like(200, seed=41).drop(columns=["Y"])
    batch = [{k: (None if v != v else v) for k, v in r.items()} for r in same.to_dict("records")]
    client.post("/predict/adult", json={"rows": batch[:100]})
    client.post("/predict/adult", json={"rows": batch[100:]})
    deadline = time.time() + 30
    drift = None
    while time.time() < deadline and not (drift and drift["rows"] == 200):
        drift = client.get("/models").json()["variants"]["production"]["drift"]
        time.sleep(0.1)
    assert drift is not None and not drift["detected"], drift
