"""The training report (Markdown, self-contained HTML, PNG plots), the latency and size
figures (logged, tagged, gated) and the DVC provenance of the registered version."""

from __future__ import annotations

import base64
import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from typer.testing import CliRunner

from llmops.cli.main import app
from llmops.config import load_model_app_config
from llmops.config.model_app import ModelAppConfig
from llmops.evaluation.gates import GateResult, check, parse_gate
from llmops.ml import report as ml_report
from llmops.ml.features import model_pipeline
from llmops.ml.report import write_training_report
from llmops.ml.validation import ValidationReport
from llmops.pipelines.train import Training, TrainReport
from tests.ml.adult_like import adult_like
from tests.ml.test_train import registry, write_app

PNG = b"\x89PNG\r\n\x1a\n"
GATES = '"roc_auc >= 0.8", "latency_ms_per_row <= 1000", "model_bytes < 1e9"'
CLASSIFICATION_PLOTS = ("confusion_matrix.png", "roc.png", "calibration.png", "importance.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainReport]:
    """One app trained and registered, its training file tracked by DVC."""
    root = tmp_path_factory.mktemp("report")
    config = write_app(root, trials=2, gates=GATES)
    data = root / "adult" / "adult.data"
    md5 = hashlib.md5(data.read_bytes()).hexdigest()
    (root / "adult" / "adult.data.dvc").write_text(
        f"outs:\n- md5: {md5}\n  size: {data.stat().st_size}\n  hash: md5\n  path: adult.data\n"
    )
    report = Training(load_model_app_config(config)).run()
    assert report.version is not None and report.report_dir is not None
    return root, report


def test_the_report_is_written_in_the_data_dir_with_its_plots(
    trained: tuple[Path, TrainReport],
) -> None:
    root, report = trained
    folder = report.report_dir
    assert folder == root / "state" / "reports" / str(report.run_id)
    for name in CLASSIFICATION_PLOTS:
        assert (folder / name).read_bytes().startswith(PNG), name
    assert not (folder / "prediction_errors.png").exists()


def test_the_html_embeds_every_plot_and_shows_the_metrics(
    trained: tuple[Path, TrainReport],
) -> None:
    _, report = trained
    assert report.report_dir is not None
    page = (report.report_dir / "report.html").read_text()
    for name in CLASSIFICATION_PLOTS:
        data = base64.b64encode((report.report_dir / name).read_bytes()).decode()
        assert f"src='data:image/png;base64,{data}'" in page, name
    assert ".png'" not in page  # self-contained: no image is linked
    assert f"<td>roc_auc</td><td>{report.metrics['roc_auc']:.4f}</td>" in page
    assert f"{report.runtime['latency_ms_per_row']:.3f} ms" in page
    assert report.data_sha256 in page and "class='PASSED'>PASSED" in page


def test_the_markdown_lists_gates_slices_fairness_and_importance(
    trained: tuple[Path, TrainReport],
) -> None:
    _, report = trained
    assert report.report_dir is not None
    md = (report.report_dir / "report.md").read_text()
    assert md.startswith("# Training report: adult — PASSED")
    latency = report.runtime["latency_ms_per_row"]
    assert f"| roc_auc >= 0.8 | {report.metrics['roc_auc']:.4g} | — | pass |" in md
    assert f"| latency_ms_per_row <= 1000 | {latency:.4g} | — | pass |" in md
    assert "| model_bytes < 1e+09 |" in md
    assert "| version | 1 (alias candidate) |" in md
    gap = report.fairness["sex"]["demographic_parity_difference"]
    assert f"| sex | demographic_parity_difference | {gap.value:.3f} | [{gap.low:.3f}," in md
    assert "## Metrics by sex" in md and "| Female |" in md
    ranked = _importance_ranking(md)
    assert set(ranked) == {"age", "education-num", "hours-per-week", "capital-gain",
                           "marital-status", "sex", "workclass"}  # fmt: skip
    # the label follows education-num most and never looks at sex or workclass
    # (tests/ml/adult_like.py)
    assert ranked[0] == "education-num" and set(ranked[-2:]) == {"sex", "workclass"}
    assert "![ROC curve](roc.png)" in md


def test_latency_and_size_are_logged_apart_from_the_test_metrics(
    trained: tuple[Path, TrainReport],
) -> None:
    root, report = trained
    assert set(report.runtime) == {"latency_ms_per_row", "latency_ms_per_row_batch", "model_bytes"}
    assert not set(report.runtime) & set(report.metrics)
    assert 0 < report.runtime["latency_ms_per_row_batch"] < report.runtime["latency_ms_per_row"]
    model = registry(root).load("adult", "1")
    assert report.runtime["model_bytes"] == pytest.approx(len(pickle.dumps(model)), rel=0.2)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'state' / 'mlflow.db'}")
    logged = client.get_run(str(report.run_id)).data.metrics
    assert logged["latency_ms_per_row"] == pytest.approx(report.runtime["latency_ms_per_row"])
    assert logged["model_bytes"] == report.runtime["model_bytes"] and "test_roc_auc" in logged
    assert not any(k.startswith("test_") and "latency" in k for k in logged)
    files = {a.path for a in client.list_artifacts(str(report.run_id), "report")}
    assert {"report/report.md", "report/report.html", "report/roc.png"} <= files
    version = registry(root).get("adult", "1")
    assert float(version.tags["runtime.model_bytes"]) == report.runtime["model_bytes"]
    assert "latency_ms_per_row" not in version.metrics


def test_the_version_is_tagged_with_the_dvc_md5_of_its_data(
    trained: tuple[Path, TrainReport],
) -> None:
    root, _ = trained
    tags = registry(root).get("adult", "1").tags
    data = (root / "adult" / "adult.data").read_bytes()
    assert tags["dvc.md5"] == hashlib.md5(data).hexdigest()
    assert tags["dvc.file"] == "adult/adult.data.dvc"
    assert "dvc.test.md5" not in tags  # adult.test is not tracked


def test_a_gate_reads_latency_or_size_only_when_it_names_them(
    trained: tuple[Path, TrainReport],
) -> None:
    _, report = trained
    measured = {**report.metrics, **report.runtime}
    gates = [parse_gate("latency_ms_per_row_batch <= 0"), parse_gate("model_bytes >= 1000")]
    too_slow, big_enough = check(gates, measured)
    assert not too_slow.passed and too_slow.value == report.runtime["latency_ms_per_row_batch"]
    assert big_enough.passed
    # the test metrics alone (what the version's metric tags hold) have no such figure
    assert check(gates, report.metrics)[1] == GateResult(gates[1], None, False)


def test_gates_on_latency_and_size_compare_with_production_and_fail_the_cli(
    trained: tuple[Path, TrainReport],
) -> None:
    root, _ = trained
    production = registry(root).promote("adult")
    latency = float(production.tags["runtime.latency_ms_per_row"])
    config = root / "adult.yaml"
    gates = '"latency_ms_per_row <= production + 1000", "model_bytes <= 1"'
    config.write_text(config.read_text().replace(GATES, gates))
    result = CliRunner().invoke(app, ["train", str(config), "--trials", "1"])
    assert result.exit_code == 1, result.output
    assert "PASS  latency_ms_per_row <= production + 1000" in result.output
    assert f"production {latency:.4g}" in result.output
    assert "FAIL  model_bytes <= 1" in result.output
    path = Path(result.output.split("report: ")[-1].split()[0])
    md = (path.parent / "report.md").read_text()
    assert path.is_file() and md.startswith("# Training report: adult — FAILED")
    assert f"| production {latency:.4g} | pass |" in md and "| not registered |" in md
    assert [v.version for v in registry(root).versions("adult")] == [1]


def _importance_ranking(md: str) -> list[str]:
    """The columns of the report's permutation importance table, most important first."""
    table = md.split("## Permutation importance")[1].split("##")[0].strip().splitlines()
    return [line.split(" | ")[0].removeprefix("| ") for line in table[2:]]


@dataclass
class Outcome:
    """What the report reads of a run, without training one."""

    model: str = "hours"
    validation: ValidationReport = field(default_factory=lambda: ValidationReport(400, []))
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=lambda: {"rmse": 1.5, "r2": 0.9})
    runtime: dict[str, float] = field(default_factory=lambda: {"model_bytes": 2048.0})
    slices: dict[str, Any] = field(default_factory=dict)
    fairness: dict[str, Any] = field(default_factory=dict)
    gates: list[GateResult] = field(default_factory=list)
    version: Any = None
    run_id: str | None = None
    data_sha256: str = "abc"
    seconds: float = 1.0
    passed: bool = True


def _regression() -> tuple[Any, Any, ModelAppConfig]:
    rows = adult_like(400, seed=3)
    noise = np.random.default_rng(0).normal(0, 2, len(rows))
    rows["hours-per-week"] = 0.8 * rows["age"] + noise
    app_config = ModelAppConfig.model_validate(
        {"kind": "model", "name": "hours", "task": "regression", "target": "hours-per-week",
         "data": {"train": {"path": "x.csv"}}, "model": {"type": "linear"},
         "features": {"numeric": ["age", "education-num"], "categorical": ["sex"]}}
    )  # fmt: skip
    from sklearn.linear_model import LinearRegression

    model = model_pipeline(app_config.features, LinearRegression())
    model.fit(rows.drop(columns=["hours-per-week"]), rows["hours-per-week"])
    return model, rows, app_config


def test_a_regression_report_plots_prediction_errors_and_ranks_the_real_signal(
    tmp_path: Path,
) -> None:
    model, rows, app_config = _regression()
    md, page = write_training_report(tmp_path, Outcome(), model, rows, app_config)
    assert (tmp_path / "prediction_errors.png").read_bytes().startswith(PNG)
    assert not (tmp_path / "roc.png").exists() and not (tmp_path / "confusion_matrix.png").exists()
    text = md.read_text()
    assert "| column | drop in R² | std |" in text
    assert _importance_ranking(text)[0] == "age"  # the column the target follows
    assert "| model_bytes | 2,048 bytes, pickled (2 KiB) |" in text
    assert page.read_text().count("data:image/png;base64,") == 2


def test_without_matplotlib_the_report_keeps_its_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, rows, app_config = _regression()
    monkeypatch.setattr(ml_report, "available", lambda module: module != "matplotlib")
    md, page = write_training_report(tmp_path, Outcome(), model, rows, app_config)
    assert ml_report.NO_PLOTS in md.read_text() and "| rmse | 1.5000 |" in md.read_text()
    assert "data:image/png" not in page.read_text() and not list(tmp_path.glob("*.png"))
