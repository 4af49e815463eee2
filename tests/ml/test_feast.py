"""Feast as a model app's feature source, on a real feature repository built in the test
(local provider, SQLite online store, file offline store): training rows joined point-in-time
by get_historical_features, /predict rows completed from the online store, unknown entities
named by row."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

if importlib.util.find_spec("feast") is None:
    pytest.skip("feast is not installed (the feast extra)", allow_module_level=True)
from llmops.ml.feature_store import feast_module

feast = feast_module()  # imported as llmops imports it (see PROMETHEUS_ENV)

from llmops.config import load_model_app_config  # noqa: E402
from llmops.errors import ConfigError, DatasetError, InvalidRows  # noqa: E402
from llmops.ml.data import data_sha256, load_splits  # noqa: E402
from llmops.ml.feature_store import (  # noqa: E402
    FeatureCompleter,
    UnknownEntity,
    feature_completer,
    open_store,
    training_table,
)
from llmops.ml.predict import model_columns, predict_rows, rows_frame  # noqa: E402
from llmops.pipelines.train import Training, app_registry  # noqa: E402
from tests.ml.test_train import write_app  # noqa: E402

CUSTOMERS = 300
NOW = datetime.now(UTC).replace(microsecond=0)
BEFORE, LATEST = NOW - timedelta(days=30), NOW - timedelta(days=1)  # two feature snapshots
REFS = ["customer_stats:age", "customer_stats:income", "customer_stats:segment"]

CONFIG = """kind: model
name: churn
data_dir: state
data:
  feast:
    repo: repo
    entities: labels.csv
    entity_keys: [customer_id]
    features: {features}
target: churned
positive_class: "yes"
schema:
  min_rows: 50
  columns:
    age: {{type: int, min: 18, max: 100, nullable: false}}
    churned: {{type: str, allowed: ["yes", "no"]}}
features: {{numeric: [age, income], categorical: [segment]}}
model: {{type: logistic_regression}}
search:
  n_trials: 2
  cv_folds: 2
  metric: roc_auc
  space: {{C: {{low: 0.1, high: 10.0, log: true}}}}
gates: ["roc_auc >= 0.75"]
"""


def snapshots() -> pd.DataFrame:
    """Each customer's features at BEFORE and, changed (income + 1000), at LATEST."""
    rng = np.random.default_rng(0)
    before = pd.DataFrame(
        {
            "customer_id": np.arange(CUSTOMERS, dtype="int64"),
            "event_timestamp": BEFORE,
            "age": rng.integers(18, 80, CUSTOMERS),
            "income": rng.normal(50.0, 15.0, CUSTOMERS).round(2),
            "segment": rng.choice(["basic", "plus"], CUSTOMERS),
        }
    )
    latest = before.assign(event_timestamp=LATEST, income=before["income"] + 1000.0)
    return pd.concat([before, latest], ignore_index=True)


def build_repo(root: Path) -> pd.DataFrame:
    """A Feast repo under root/repo, applied and materialized; the snapshots written."""
    from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64, Int64, String

    repo = root / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(
        "project: churn\nregistry: data/registry.db\nprovider: local\n"
        "online_store: {type: sqlite, path: data/online.db}\noffline_store: {type: file}\n"
        "entity_key_serialization_version: 3\n"
    )
    features = snapshots()
    features.to_parquet(repo / "data" / "customers.parquet")
    customer = Entity(name="customer", join_keys=["customer_id"])
    view = FeatureView(
        name="customer_stats",
        entities=[customer],
        ttl=timedelta(0),  # no age limit
        schema=[
            Field(name="age", dtype=Int64),
            Field(name="income", dtype=Float64),
            Field(name="segment", dtype=String),
        ],
        source=FileSource(
            path=str(repo / "data" / "customers.parquet"), timestamp_field="event_timestamp"
        ),
    )
    service = FeatureService(name="churn_model", features=[view[["age", "income"]]])
    store = FeatureStore(repo_path=str(repo))
    store.apply([customer, view, service])
    store.materialize(BEFORE - timedelta(days=1), NOW)
    return features


def write_labels(root: Path, before: pd.DataFrame) -> None:
    """The entity table: one row per customer between the snapshots, its label learnable
    from the BEFORE features (the ones a point-in-time join must give)."""
    signal = (
        0.08 * (before["age"] - 45)
        + 0.1 * (before["income"] - 50)
        + 1.5 * (before["segment"] == "plus")
    )
    labels = pd.DataFrame(
        {
            "customer_id": before["customer_id"],
            "event_timestamp": (BEFORE + timedelta(days=10)).isoformat(),
            "churned": np.where(signal > 0.7, "yes", "no"),
        }
    )
    labels.to_csv(root / "labels.csv", index=False)


@pytest.fixture(scope="module")
def app_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("feast")
    features = build_repo(root)
    write_labels(root, features[features["event_timestamp"] == BEFORE])
    return root


def write_config(root: Path, features: str = str(REFS).replace("'", '"')) -> Path:
    config = root / "churn.yaml"
    config.write_text(CONFIG.format(features=features))
    return config


def test_training_rows_are_joined_as_of_each_entity_rows_time(app_root: Path) -> None:
    loaded = load_model_app_config(write_config(app_root))
    source = loaded.app.data.feast
    assert source is not None
    entities = pd.read_csv(app_root / "labels.csv")
    table = training_table(source, app_root, entities, "churned")
    before = snapshots().iloc[:CUSTOMERS]
    assert list(table["customer_id"]) == list(entities["customer_id"])  # the table's order
    assert np.allclose(table["income"], before["income"])  # not LATEST's income + 1000
    assert list(table["segment"]) == list(before["segment"])
    splits = load_splits(loaded.app.data, app_root, "churned", "classification")
    assert "event_timestamp" not in splits.train.columns
    assert {"customer_id", "age", "income", "segment", "churned"} <= set(splits.train.columns)
    assert len(splits.train) + len(splits.valid) + len(splits.test) == CUSTOMERS


def test_a_model_app_trains_on_feast_features_and_serves_key_only_rows(app_root: Path) -> None:
    loaded = load_model_app_config(write_config(app_root))
    training = Training(loaded)
    report = training.run()
    assert report.passed and report.version is not None, report.gates
    assert report.metrics["roc_auc"] >= 0.75
    assert report.search is not None and report.search.trials_run == 2

    completer = feature_completer(loaded)
    assert completer is not None
    rows = completer.complete([{"customer_id": 3}, {"customer_id": 4, "income": 55.0}])
    latest = snapshots().iloc[CUSTOMERS:].set_index("customer_id")
    assert rows[0]["income"] == pytest.approx(latest.loc[3, "income"])  # the online value
    assert rows[0]["age"] == latest.loc[3, "age"]
    assert rows[0]["segment"] == latest.loc[3, "segment"]
    assert rows[1]["income"] == 55.0  # what the row sent is kept
    assert rows[1]["segment"] == latest.loc[4, "segment"]

    model = training.model
    frame = rows_frame(rows, loaded.app, model_columns(model, loaded.app))
    assert [p.label for p in predict_rows(model, frame)] == list(model.predict(frame))


def test_predict_over_http_completes_key_only_rows_from_the_online_store(app_root: Path) -> None:
    from fastapi.testclient import TestClient

    from llmops.model_service import ModelService
    from llmops.server.model_app import create_model_app

    loaded = load_model_app_config(write_config(app_root))
    registry = app_registry(loaded)
    if "churn" not in registry.names():
        Training(loaded).run()
    registry.promote("churn", "latest")
    with TestClient(create_model_app(ModelService(loaded))) as client:
        answer = client.post("/predict/churn", json={"rows": [{"customer_id": 3}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["label"] in ("yes", "no")
        unknown = client.post("/predict/churn", json={"rows": [{"customer_id": 99999}]})
        assert unknown.status_code == 422
        assert "customer_id" in str(unknown.json()["detail"])


def test_rows_with_every_feature_pass_unchanged(app_root: Path) -> None:
    completer = feature_completer(load_model_app_config(write_config(app_root)))
    assert completer is not None
    row = {"customer_id": 123456, "age": 30, "income": 1.5, "segment": "basic"}
    assert completer.complete([row]) == [row]  # not looked up: the key is not even stored


def test_an_unknown_entity_is_an_error_naming_its_row_and_key(app_root: Path) -> None:
    completer = feature_completer(load_model_app_config(write_config(app_root)))
    assert completer is not None
    with pytest.raises(UnknownEntity) as caught:
        completer.complete([{"customer_id": 1}, {"customer_id": 99999}])
    assert isinstance(caught.value, InvalidRows)
    [problem] = caught.value.problems
    assert (problem.row, problem.column) == (1, "customer_id")
    assert "customer_id=99999" in problem.message and "online store" in problem.message


def test_a_row_without_features_or_key_is_named(app_root: Path) -> None:
    completer = feature_completer(load_model_app_config(write_config(app_root)))
    assert completer is not None
    with pytest.raises(InvalidRows) as caught:
        completer.complete([{"customer_id": 1}, {"age": 40}])
    assert not isinstance(caught.value, UnknownEntity)
    assert [(p.row, p.column) for p in caught.value.problems] == [(1, "customer_id")]


def test_a_feature_service_names_the_features(app_root: Path) -> None:
    loaded = load_model_app_config(write_config(app_root, features="churn_model"))
    completer = feature_completer(loaded)
    assert isinstance(completer, FeatureCompleter)
    assert completer.columns == ["age", "income"]
    [row] = completer.complete([{"customer_id": 7}])
    assert set(row) == {"customer_id", "age", "income"}


def test_the_data_hash_covers_the_entity_table_and_the_features(app_root: Path) -> None:
    first = load_model_app_config(write_config(app_root)).app.data
    fewer = load_model_app_config(write_config(app_root, features='["customer_stats:age"]'))
    assert data_sha256(first, app_root) == data_sha256(first, app_root)
    assert data_sha256(first, app_root) != data_sha256(fewer.app.data, app_root)
    other = app_root / "other"
    other.mkdir()
    (other / "labels.csv").write_text((app_root / "labels.csv").read_text() + "1,2026-01-01,no\n")
    assert data_sha256(first, other) != data_sha256(first, app_root)


def test_without_feast_there_is_no_completer(tmp_path: Path) -> None:
    assert feature_completer(load_model_app_config(write_app(tmp_path))) is None


def test_a_missing_feature_repo_is_a_clear_error(app_root: Path, tmp_path: Path) -> None:
    source = load_model_app_config(write_config(app_root)).app.data.feast
    assert source is not None
    with pytest.raises(DatasetError, match=r"no feature_store\.yaml in"):
        open_store(source, tmp_path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            "{train: {path: a.csv}, feast: {repo: r, entities: e.csv, entity_keys: [k], "
            "features: [v:f]}}",
            "not both",
        ),
        ("{target_map: {}}", "where the training rows come from"),
        (
            "{feast: {repo: r, entities: e.csv, entity_keys: [k], features: [age]}}",
            "not a 'view:feature' reference: age",
        ),
        (
            "{feast: {repo: r, entities: e.csv, entity_keys: [k], features: [v:f]}, "
            "test: {path: t.csv}}",
            "split off the entity table",
        ),
    ],
)
def test_config_names_one_source_of_rows(tmp_path: Path, data: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        f"kind: model\nname: churn\ndata: {data}\ntarget: y\n"
        "features: {numeric: [age]}\nmodel: {type: logistic_regression}\n"
    )
    with pytest.raises(ConfigError, match=message):
        load_model_app_config(config)


@pytest.mark.parametrize(
    "importing",
    [
        "from llmops.ml.feature_store import feast_module\nfeast_module()",
        # MLflow loads feast's MLflow plugin (a request header provider) by itself, the first
        # time it talks to a tracking server: found when an eval run's MLflow logging left the
        # variable set and a training subprocess started later wrote into feast's folder
        "from llmops.deps import require\nrequire('mlflow', 'eval')\n"
        "from mlflow.tracking.request_header.registry import resolve_request_headers\n"
        "resolve_request_headers()",
    ],
    ids=["feast", "mlflow"],
)
def test_importing_feast_leaves_prometheus_in_single_process_mode(importing: str) -> None:
    """``import feast`` points PROMETHEUS_MULTIPROC_DIR at a folder of its own; left set, every
    /metrics scrape of the process would read that folder instead of llmops' counters, and
    every process it starts would run in multiprocess mode."""
    import os
    import subprocess
    import sys

    code = (
        f"import os, sys\n{importing}\nassert 'feast' in sys.modules\n"
        "print(sorted(k for k in os.environ if k.upper().startswith('PROMETHEUS_MULTIPROC')))\n"
        "from prometheus_client import values\nassert values.ValueClass is values.MutexValue\n"
        "from llmops.monitoring.metrics import Metrics\n"  # its counters must still work
        "Metrics('app').error('x')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS")}
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "[]"
