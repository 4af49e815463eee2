"""`POST /predict/{model}`: the version the serving alias points at answers, rows are checked
row by row (422 naming row and column, never a 500), concurrent requests share model calls,
and a promotion switches the running server to the new version without a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.config.model_app import ServingConfig
from llmops.model_service import ModelService
from llmops.server.model_app import create_model_app
from tests.ml.adult_like import adult_like
from tests.ml.conftest import train
from tests.ml.test_train import registry, write_app
from tests.server.openapi_limits import post_operations, walk

pytestmark = pytest.mark.slow


@pytest.fixture
def client(served_app: Path) -> Iterator[TestClient]:
    with TestClient(create_model_app(ModelService.from_config(served_app))) as test_client:
        yield test_client


def rows(n: int, seed: int = 5) -> list[dict[str, Any]]:
    frame = adult_like(n, seed=seed).drop(columns=["Y"])
    return [{k: (None if v != v else v) for k, v in r.items()} for r in frame.to_dict("records")]


def test_predict_answers_with_the_production_version(client: TestClient) -> None:
    response = client.post("/predict/adult", json={"rows": rows(3)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["version"], body["alias"]) == ("adult", 1, "production")
    assert len(body["predictions"]) == 3
    for prediction in body["predictions"]:
        assert prediction["label"] in {"<=50K", ">50K"}
        assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-6
    assert client.get("/ready").status_code == 200
    assert client.get("/models").json()["version"] == 1


@pytest.mark.parametrize(
    ("change", "status", "where"),
    [
        (lambda r: r[1].update(colour="red"), 422, ["body", "rows", 1, "colour"]),
        (lambda r: r[0].pop("age"), 422, ["body", "rows", 0, "age"]),
        (lambda r: r[2].update(age="old"), 422, ["body", "rows", 2, "age"]),
        (lambda r: r[0].update(age=None), 422, ["body", "rows", 0, "age"]),
        (lambda r: r[1].update(age=250), 422, ["body", "rows", 1, "age"]),
    ],
)
def test_bad_rows_are_a_422_naming_row_and_column(
    client: TestClient, change: Any, status: int, where: list[Any]
) -> None:
    batch = rows(3)
    change(batch)
    response = client.post("/predict/adult", json={"rows": batch})
    assert response.status_code == status, response.text
    assert where in [p["loc"] for p in response.json()["detail"]], response.json()


def test_batch_limits_and_unknown_models(client: TestClient) -> None:
    assert client.post("/predict/adult", json={"rows": []}).status_code == 422
    over = client.post("/predict/adult", json={"rows": rows(51)})
    assert over.status_code == 400 and "serving.max_rows" in over.json()["detail"]
    missing = client.post("/predict/churn", json={"rows": rows(1)})
    assert missing.status_code == 404 and "serves 'adult'" in missing.json()["detail"]
    nan = client.post(
        "/predict/adult",
        content=b'{"rows": [{"age": NaN}]}',
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 422


def test_every_input_is_bounded_and_every_body_has_a_size_limit(client: TestClient) -> None:
    """The model app's half of tests/server/test_request_limits.py: its one config limit
    (serving.max_rows) is tried in the test above."""
    document = client.get("/openapi.json").json()
    found = walk(document)
    assert found.unbounded == []
    assert found.limits == {("POST /predict/{model}", "serving.max_rows")}
    limit = ServingConfig().max_body_bytes
    body = b'{"x": "' + b"y" * limit + b'"}'
    paths = [p.replace("{model}", "adult") for p in post_operations(document)]
    assert paths == ["/models/adult/promote", "/predict/adult", "/labels"]
    for path in paths:
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 413, (path, response.text)


def test_concurrent_requests_share_model_calls(served_app: Path) -> None:
    service = ModelService.from_config(served_app)
    calls: list[int] = []
    inner = service._predict_batch

    def counted(batch: list[dict[str, Any]]) -> Any:
        calls.append(len(batch))
        time.sleep(0.01)  # a model call takes a moment: requests pile up meanwhile
        return inner(batch)

    service._batcher.run = counted

    async def burst() -> list[Any]:
        await service.astart()
        try:
            return await asyncio.gather(*(service.predict("adult", rows(1, i)) for i in range(40)))
        finally:
            await service.aclose()

    answers = asyncio.run(burst())
    assert len(answers) == 40 and sum(calls) == 40
    assert len(calls) < 20, calls  # 40 requests, far fewer model calls


def test_a_promotion_reaches_the_running_server_without_a_restart(served_app: Path) -> None:
    service = ModelService.from_config(served_app)
    with TestClient(create_model_app(service)) as client:
        assert client.post("/predict/adult", json={"rows": rows(1)}).json()["version"] == 1
        version = train(served_app)
        registry(served_app.parent).promote("adult", str(version))
        deadline = time.time() + 60
        while client.get("/models").json()["version"] != version and time.time() < deadline:
            time.sleep(0.1)
        assert client.post("/predict/adult", json={"rows": rows(1)}).json()["version"] == version
        registry(served_app.parent).rollback("adult")
        while client.get("/models").json()["version"] != 1 and time.time() < deadline + 60:
            time.sleep(0.1)
        assert client.post("/predict/adult", json={"rows": rows(1)}).json()["version"] == 1


def test_no_production_version_yet_is_not_ready_with_the_reason(tmp_path: Path) -> None:
    config = write_app(tmp_path, trials=2)
    train(config)  # a candidate, not promoted
    with TestClient(create_model_app(ModelService.from_config(config))) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and "llmops models promote adult" in ready.json()["reason"]
        refused = client.post("/predict/adult", json={"rows": rows(1)})
        assert refused.status_code == 503


def test_a_null_in_a_text_column_is_imputed_as_training_rows_were(served_app: Path) -> None:
    """JSON null must reach the model as a missing value (NaN), not as a category None that
    skips the imputer: the served answer equals the model's on the row as read from a file."""
    import pandas as pd

    from llmops.ml.predict import features_frame, predict_rows

    service = ModelService.from_config(served_app)
    model = service.registry.load("adult", "production")
    columns = [str(c) for c in model.feature_names_in_]
    row = rows(1, seed=8)[0] | {"workclass": None, "occupation": None}
    from_file = pd.DataFrame([row], columns=columns).fillna(value=float("nan"))
    from_file = from_file.astype({"workclass": object, "occupation": object})
    served = predict_rows(model, features_frame([row], columns))[0]
    assert served.probabilities == pytest.approx(
        dict(zip(map(str, model.classes_), model.predict_proba(from_file)[0], strict=True))
    )


def test_the_onnx_runtime_serves_the_registered_export_with_the_same_answers(
    tmp_path: Path,
) -> None:
    from llmops.models.onnx_model import OnnxClassifier

    config = write_app(tmp_path, trials=1)
    config.write_text(config.read_text() + "registry: {onnx: true}\nserving: {runtime: onnx}\n")
    train(config)
    registry(tmp_path).promote("adult")
    service = ModelService.from_config(config)
    fitted = service.registry.load("adult", "production")
    batch = rows(20, seed=12)
    with TestClient(create_model_app(service)) as client:
        answer = client.post("/predict/adult", json={"rows": batch})
        assert answer.status_code == 200, answer.text
        assert isinstance(service.versions.get("production").model, OnnxClassifier)
    from llmops.ml.predict import features_frame

    expected = fitted.predict_proba(features_frame(batch, list(fitted.feature_names_in_)))
    for got, row in zip(answer.json()["predictions"], expected, strict=True):
        assert list(got["probabilities"].values()) == pytest.approx(list(row), abs=1e-4)


def test_a_registry_that_is_down_is_a_503_with_the_reason_not_a_500(tmp_path: Path) -> None:
    config = write_app(tmp_path, trials=1)
    config.write_text(config.read_text() + "registry: {tracking_uri: 'http://127.0.0.1:9'}\n")
    with TestClient(create_model_app(ModelService.from_config(config))) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and "127.0.0.1:9" in ready.json()["reason"]
        refused = client.post("/predict/adult", json={"rows": rows(1)})
        assert refused.status_code == 503 and "127.0.0.1:9" in refused.json()["detail"]
        assert client.get("/models").status_code == 200
