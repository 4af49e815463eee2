"""`llmops train` end to end on a small census-like table: validation, search, gates, the
registered candidate, and a search killed mid-way that resumes from its stored trials."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmops.cli.main import app
from llmops.models.registry import ModelRegistry
from tests.ml.adult_like import adult_like, write_adult_like

CONFIG = """kind: model
name: adult
data_dir: state
data:
  train: {{path: adult/adult.data, na_values: ["?"]}}
  test: {{path: adult/adult.test, na_values: ["?"]}}
  target_map: {{"<=50K.": "<=50K", ">50K.": ">50K"}}
target: Y
positive_class: ">50K"
schema:
  min_rows: 100
  columns:
    age: {{type: int, min: 17, max: 100, nullable: false}}
    Y: {{type: str, allowed: ["<=50K", ">50K"]}}
features:
  numeric: [age, education-num, hours-per-week, capital-gain]
  categorical: [marital-status, sex, workclass]
model: {model}
search:
  n_trials: {trials}
  cv_folds: 2
  metric: roc_auc
  space: {space}
slices: [sex]
fairness: [sex]
gates: [{gates}]
"""
LINEAR = ("{type: logistic_regression}", "{C: {low: 0.01, high: 10.0, log: true}}")


def write_app(
    root: Path, trials: int = 4, gates: str = '"roc_auc >= 0.8"', kind: tuple[str, str] = LINEAR
) -> Path:
    write_adult_like(root / "adult")
    config = root / "adult.yaml"
    model, space = kind
    config.write_text(CONFIG.format(model=model, trials=trials, space=space, gates=gates))
    return config


def registry(root: Path) -> ModelRegistry:
    return ModelRegistry(
        f"sqlite:///{root / 'state' / 'mlflow.db'}", str(root / "state" / "mlartifacts")
    )


def test_train_validates_searches_gates_and_registers_a_candidate(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", str(write_app(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "PASS  roc_auc >= 0.8" in result.output
    assert "registered adult version 1 as candidate" in result.output
    assert "fairness by sex: demographic_parity_difference 0." in result.output
    assert "equalized_odds_difference" in result.output
    version = registry(tmp_path).get("adult", "candidate")
    assert version.version == 1 and float(version.tags["metric.roc_auc"]) >= 0.8
    model = registry(tmp_path).load("adult", "candidate")
    rows = adult_like(5, seed=9).drop(columns=["Y"])
    assert set(model.predict(rows)) <= {"<=50K", ">50K"}


def test_invalid_data_exits_2_with_a_report_naming_column_rule_and_rows(tmp_path: Path) -> None:
    config = write_app(tmp_path)
    data = tmp_path / "adult" / "adult.data"
    lines = data.read_text().splitlines()
    fields = lines[5].split(",")
    fields[0] = "150"
    lines[5] = ",".join(fields)
    data.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 2, result.output
    assert "age: less_than_or_equal_to(100.0) failed for 1 row(s)" in result.output
    assert "'age': 150" in result.output
    report = tmp_path / "state" / "reports" / "data-validation.html"
    assert "less_than_or_equal_to" in report.read_text()


def test_a_failing_gate_exits_1_and_registers_nothing(tmp_path: Path) -> None:
    config = write_app(tmp_path, gates='"roc_auc >= 0.999"')
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 1, result.output
    assert "FAIL  roc_auc >= 0.999" in result.output and "not registered" in result.output
    assert registry(tmp_path).names() == []


# enough trials that the watcher sees 3 finished well before the search ends, on a fast machine
KILLED_TRIALS = 24


@pytest.mark.slow
def test_a_training_killed_during_its_search_resumes_from_the_stored_trials(
    tmp_path: Path,
) -> None:
    forest = ("{type: random_forest, params: {n_estimators: 60, n_jobs: 1}}",
              "{max_depth: {low: 2, high: 12, integer: true}}")  # fmt: skip
    config = write_app(tmp_path, trials=KILLED_TRIALS, kind=forest)
    llmops = str(Path(sys.executable).parent / "llmops")
    log = tmp_path / "train.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [llmops, "train", str(config)], stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    storage = tmp_path / "state" / "studies.sqlite"
    deadline = time.time() + 300  # a loaded 2-core machine is slow to start and to fit
    finished = 0
    while finished < 3 and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
        finished = _finished_trials(storage)
    ended = process.poll()
    if ended is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert ended is None and 3 <= finished < KILLED_TRIALS, (finished, ended, log.read_text())
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    resumed = KILLED_TRIALS - _finished_trials_at_kill(result.output)
    assert f"{KILLED_TRIALS} in the study" in result.output and resumed > 0


def _finished_trials(storage: Path) -> int:
    """Trials the running training has finished, read from its optuna store read-only: opening it
    with optuna would run optuna's own schema creation beside the training process's."""
    if not storage.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{storage}?mode=ro", uri=True, timeout=1)) as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')"
            ).fetchone()
    except sqlite3.Error:  # the schema is being created
        return 0
    return int(count)


def _finished_trials_at_kill(output: str) -> int:
    now = output.split(" trials now, ")[0].rsplit("(", 1)[1]
    return KILLED_TRIALS - int(now)


def test_a_gate_against_production_compares_with_the_promoted_version(tmp_path: Path) -> None:
    gates = '"roc_auc >= production - 0.05", "roc_auc >= production + 0.5"'
    config = write_app(tmp_path, trials=2, gates='"roc_auc >= production - 0.05"')
    first = CliRunner().invoke(app, ["train", str(config)])
    assert first.exit_code == 0 and "no production value yet" in first.output, first.output
    registry(tmp_path).promote("adult")
    config.write_text(config.read_text().replace('"roc_auc >= production - 0.05"', gates))
    second = CliRunner().invoke(app, ["train", str(config)])
    assert second.exit_code == 1, second.output
    production = registry(tmp_path).get("adult", "production").metrics["roc_auc"]
    assert "PASS  roc_auc >= production - 0.05" in second.output
    assert "FAIL  roc_auc >= production + 0.5" in second.output
    assert f"production {production:.4g}" in second.output


def test_another_estimator_or_space_starts_its_own_study(tmp_path: Path) -> None:
    """Same app and data, another model: its trials must not inherit the first study's
    parameters (a random forest given a learning rate); the same job resumes its own."""
    from llmops.config import load_model_app_config
    from llmops.pipelines.train import Training

    linear = Training(load_model_app_config(write_app(tmp_path)))
    again = Training(load_model_app_config(write_app(tmp_path, trials=9)))
    forest = Training(
        load_model_app_config(
            write_app(
                tmp_path,
                kind=(
                    "{type: random_forest}",
                    "{min_samples_leaf: {low: 1, high: 9, integer: true}}",
                ),
            )
        )
    )
    assert linear.study_name == again.study_name  # n_trials changes nothing: it resumes
    assert forest.study_name != linear.study_name
