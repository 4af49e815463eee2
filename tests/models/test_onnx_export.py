"""ONNX export of the pipelines llmops trains: parity with scikit-learn for every shipped
estimator (classification and regression), the refusals (a mismatch, an unconvertible model),
the Triton model repository layout run through ONNX Runtime, `llmops models export`, and
`registry: {onnx: true}` at training time."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import onnxruntime
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from typer.testing import CliRunner

from llmops import registry as components
from llmops.build import load_components
from llmops.cli.main import app
from llmops.config import load_model_app_config
from llmops.config.model_app import FeatureConfig
from llmops.ml.features import model_pipeline
from llmops.models import ModelRegistry
from llmops.models.onnx_export import (
    TOLERANCE,
    ParityMismatch,
    UnconvertibleModel,
    export_onnx,
    parity,
    to_onnx,
    write_triton,
)
from llmops.pipelines.train import Training
from tests.ml.adult_like import adult_like
from tests.ml.test_train import write_app
from tests.models.conftest import Register, fit_model

FEATURES = FeatureConfig(
    numeric=["age", "fnlwgt", "education-num", "hours-per-week"],
    categorical=["workclass", "education", "native-country"],
    ordinal=["marital-status", "occupation", "sex"],
    passthrough=["capital-gain"],
)
SMALL = {  # few trees: the tests stay fast, the conversions are the same
    "logistic_regression": {},
    "random_forest": {"n_estimators": 15, "n_jobs": 1},
    "hist_gradient_boosting": {"max_iter": 30},
    "lightgbm": {"n_estimators": 30},
}
runner = CliRunner()


def table(rows: int, seed: int) -> pd.DataFrame:
    """Adult-like rows as pandas reads a file (NaN for missing), with a category too rare for
    the one-hot encoder's min_frequency (5) and one it never saw in training."""
    frame = adult_like(rows, seed=seed)
    frame["workclass"] = frame["workclass"].where(frame["workclass"].notna(), np.nan)
    frame.loc[frame.index[:3], "native-country"] = "Peru" if seed == 1 else "Atlantis"
    if seed != 1:
        frame.loc[frame.index[3:5], "occupation"] = "Unseen-job"
    frame.loc[frame.index[5], "age"] = np.nan
    return frame


TRAIN, HELD_OUT = table(400, seed=1), table(200, seed=2)


def fitted(estimator: str, task: str = "classification", **params: Any) -> Any:
    """The pipeline `llmops train` makes for FEATURES with this estimator, fitted."""
    load_components()
    entry = components.get("estimator", estimator)
    made = entry.factory(entry.config()).make(task, {**SMALL[estimator], **params})
    features = TRAIN.drop(columns=["Y"])
    target = TRAIN["Y"] if task == "classification" else TRAIN["hours-per-week"] * 1.5
    return model_pipeline(FEATURES, made).fit(features, target)


def onnx_answers(onnx_bytes: bytes, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """ONNX Runtime's outputs by name, fed one [N, 1] tensor per column as a client would."""
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    feeds = {}
    for given in session.get_inputs():
        column = rows[given.name]
        if given.type == "tensor(string)":
            feeds[given.name] = column.fillna("").astype(str).to_numpy(object).reshape(-1, 1)
        else:
            feeds[given.name] = column.to_numpy(np.float32).reshape(-1, 1)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("estimator", list(SMALL))
def test_every_estimator_exports_within_the_tolerance(estimator: str, task: str) -> None:
    model = fitted(estimator, task)
    # the training rows too: a tree's splits sit on (or next to) their values
    rows = pd.concat([HELD_OUT, TRAIN]).drop(columns=["Y"])
    exported = export_onnx(model, rows)
    assert exported.max_abs_diff == parity(model, exported.onnx, rows)
    # a regressor's limit grows with its predictions' size: ONNX answers in float32
    scale = 1.0 if task == "classification" else float(np.abs(model.predict(rows)).max())
    assert exported.max_abs_diff < TOLERANCE * scale
    answers = onnx_answers(exported.onnx, rows)
    if task == "classification":
        assert list(answers["label"]) == list(model.predict(rows))
        np.testing.assert_allclose(answers["probabilities"], model.predict_proba(rows), atol=1e-4)
    else:
        np.testing.assert_allclose(answers["variable"][:, 0], model.predict(rows), rtol=1e-5)
    inputs = {t.name: t.type for t in exported.inputs}
    assert list(inputs) == [c for c in TRAIN.columns if c in FEATURES.columns()]
    strings = set(FEATURES.categorical + FEATURES.ordinal)
    assert inputs == {c: "string" if c in strings else "float32" for c in inputs}


def test_parity_sees_a_model_that_is_not_the_one_converted() -> None:
    model, other = fitted("random_forest"), fitted("random_forest", random_state=7)
    rows = HELD_OUT.drop(columns=["Y"])
    assert parity(model, to_onnx(model), rows) < TOLERANCE
    assert parity(model, to_onnx(other), rows) > 0.05


def test_a_mismatch_beyond_the_tolerance_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    model, rows = fitted("logistic_regression"), HELD_OUT.drop(columns=["Y"])
    diff = parity(model, to_onnx(model), rows)
    assert 0 < diff < TOLERANCE  # float32 in ONNX, float64 in scikit-learn
    with pytest.raises(ParityMismatch, match="not exported") as refused:
        export_onnx(model, rows, tolerance=diff / 2)
    assert refused.value.max_abs_diff == diff and refused.value.rows == len(rows)
    other = to_onnx(fitted("logistic_regression", C=0.001))
    monkeypatch.setattr("llmops.models.onnx_export.to_onnx", lambda _: other)
    with pytest.raises(ParityMismatch):
        export_onnx(model, rows)


class Constant(ClassifierMixin, BaseEstimator):
    """A classifier skl2onnx has never heard of."""

    def fit(self, features: Any, target: Any) -> Constant:
        self.classes_ = np.unique(target)
        return self

    def predict_proba(self, features: Any) -> np.ndarray:
        return np.full((len(features), len(self.classes_)), 1 / len(self.classes_))


def test_an_unconvertible_estimator_is_named() -> None:
    model = model_pipeline(FEATURES, Constant()).fit(TRAIN.drop(columns=["Y"]), TRAIN["Y"])
    with pytest.raises(UnconvertibleModel, match=r"estimator tests\.models\.test_onnx_export"):
        export_onnx(model, HELD_OUT.drop(columns=["Y"]))


def test_native_categorical_splits_are_refused_not_converted_wrongly() -> None:
    features = FeatureConfig(numeric=["age"], ordinal=["marital-status", "sex"])
    estimator = HistGradientBoostingClassifier(max_iter=5, categorical_features=[1, 2])
    model = model_pipeline(features, estimator).fit(TRAIN.drop(columns=["Y"]), TRAIN["Y"])
    with pytest.raises(UnconvertibleModel, match="categorical_features"):
        export_onnx(model, HELD_OUT.drop(columns=["Y"]))
    with pytest.raises(UnconvertibleModel, match="first step is a ColumnTransformer"):
        to_onnx(fitted("logistic_regression").steps[-1][1])  # the estimator alone


def tensors(config: str, section: str) -> dict[str, tuple[str, str, bool]]:
    """``{name: (data_type, dims, reshaped)}`` of config.pbtxt's input or output block."""
    block = re.search(rf"^{section} \[\n(.*?)\n\]", config, re.S | re.M)
    assert block is not None, config
    entry = r'\{ name: "([^"]+)" data_type: (\w+) dims: \[ ([-\d, ]+) \]'
    entries = re.findall(entry + r"( reshape: \{ shape: \[ \] \})?", block.group(1))
    return {name: (kind, dims, bool(reshape)) for name, kind, dims, reshape in entries}


def test_triton_repository_layout(tmp_path: Path) -> None:
    model, rows = fitted("hist_gradient_boosting"), HELD_OUT.drop(columns=["Y"])
    folder = write_triton(export_onnx(model, rows), tmp_path, "adult", max_batch_size=64)
    assert folder == tmp_path / "adult"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*")) == [
        "adult/1/model.onnx",
        "adult/config.pbtxt",
    ]
    config = (folder / "config.pbtxt").read_text()
    assert re.search(r'^name: "adult"$', config, re.M)
    assert re.search(r'^platform: "onnxruntime_onnx"$', config, re.M)
    assert re.search(r"^max_batch_size: 64$", config, re.M)
    assert re.search(r"^dynamic_batching \{ \}$", config, re.M)
    inputs = tensors(config, "input")
    assert list(inputs) == [c for c in TRAIN.columns if c in FEATURES.columns()]
    assert inputs["sex"] == inputs["workclass"] == ("TYPE_STRING", "1", False)
    assert inputs["age"] == inputs["capital-gain"] == ("TYPE_FP32", "1", False)
    assert tensors(config, "output") == {
        "label": ("TYPE_STRING", "1", True),
        "probabilities": ("TYPE_FP32", "2", False),
    }
    answers = onnx_answers((folder / "1" / "model.onnx").read_bytes(), rows)
    assert list(answers["label"]) == list(model.predict(rows))
    np.testing.assert_allclose(answers["probabilities"], model.predict_proba(rows), atol=1e-4)


def test_integer_labels_are_int64_and_a_regressor_answers_variable(tmp_path: Path) -> None:
    model, rows = fit_model()  # scaler + one-hot (no imputers), labels 0 / 1
    config = write_triton(export_onnx(model, rows), tmp_path, "ints").joinpath("config.pbtxt")
    assert tensors(config.read_text(), "output")["label"] == ("TYPE_INT64", "1", True)
    regressor = fitted("random_forest", "regression")
    exported = export_onnx(regressor, HELD_OUT.drop(columns=["Y"]))
    write_triton(exported, tmp_path, "hours")
    output = tensors((tmp_path / "hours" / "config.pbtxt").read_text(), "output")
    assert output == {"variable": ("TYPE_FP32", "1", False)}


def models(*args: str, registry: ModelRegistry) -> Any:
    return runner.invoke(app, ["models", *args, "--tracking-uri", registry.tracking_uri])


def test_cli_exports_onnx_and_triton(
    tmp_path: Path, registry: ModelRegistry, register: Register
) -> None:
    register("cli-export")
    registry.promote("cli-export")
    result = models("export", "cli-export", "--output", str(tmp_path / "onnx"), registry=registry)
    assert result.exit_code == 0, result.output
    assert "cli-export@production (version 1, LogisticRegression)" in result.output
    summary = json.loads((tmp_path / "onnx" / "model.json").read_text())
    assert [(t["name"], t["type"]) for t in summary["inputs"]] == [
        ("age", "float32"), ("hours", "float32"), ("job", "string"),
    ]  # fmt: skip
    assert summary["parity"]["rows"] == 3  # the input example stored with the version
    assert summary["parity"]["max_abs_diff"] < TOLERANCE
    model, rows = fit_model()
    answers = onnx_answers((tmp_path / "onnx" / "model.onnx").read_bytes(), rows)
    assert list(answers["label"]) == list(model.predict(rows))

    csv = tmp_path / "rows.csv"
    rows.to_csv(csv, index=False)
    repository = tmp_path / "triton"
    args = ("export", "cli-export@1", "-f", "triton", "-o", str(repository), "--rows", str(csv))
    result = models(*args, registry=registry)
    assert result.exit_code == 0, result.output
    assert "on 50 rows" in result.output
    assert (repository / "cli-export" / "1" / "model.onnx").is_file()
    config = (repository / "cli-export" / "config.pbtxt").read_text()
    assert config.startswith("# cli-export version 1 (LogisticRegression) exported by llmops")
    assert 'name: "cli-export"' in config


def test_cli_refuses_and_writes_nothing(
    tmp_path: Path, registry: ModelRegistry, register: Register
) -> None:
    register("cli-refused")
    out = tmp_path / "out"
    args = ("export", "cli-refused@candidate", "-o", str(out), "--tolerance", "0")
    result = models(*args, registry=registry)
    assert result.exit_code == 1
    assert "error: the ONNX model differs from the scikit-learn model by" in result.output
    assert not out.exists()
    result = models("export", "cli-refused", "-o", str(out), registry=registry)
    assert result.exit_code == 1  # the default, production, is not set yet
    assert "model 'cli-refused' has no version or alias 'production'" in result.output


def test_training_with_registry_onnx_logs_and_tags_it(tmp_path: Path) -> None:
    config = write_app(tmp_path, trials=1)
    config.write_text(config.read_text() + "registry: {onnx: true}\n")
    report = Training(load_model_app_config(config)).run()
    assert report.version is not None
    assert float(report.version.tags["onnx.max_abs_diff"]) < TOLERANCE
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}")
    logged = [a.path for a in client.list_artifacts(report.version.run_id, "onnx")]
    assert sorted(logged) == ["onnx/model.json", "onnx/model.onnx"]
    out = tmp_path / "exported"
    result = runner.invoke(
        app, ["models", "export", "adult@candidate", "-c", str(config), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "model.json").read_text())["parity"]["rows"] == 5
