"""`llmops predict`: a file predicted in chunks, checked row by row, resumable."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from llmops.cli.main import app
from llmops.config import load_model_app_config
from llmops.ml.predict import model_columns
from llmops.pipelines.batch_predict import predict_file
from tests.ml.adult_like import adult_like
from tests.ml.test_train import registry

pytestmark = pytest.mark.slow


class Killed(Exception):
    pass


def test_a_file_is_predicted_in_chunks_like_the_model_would(
    served_app: Path, tmp_path: Path
) -> None:
    rows = adult_like(2500, seed=11).drop(columns=["Y"])
    rows.to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(
        app, ["predict", str(served_app), "-i", str(tmp_path / "in.parquet"), "-o", str(out),
              "--chunk-rows", "1000"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    predicted = pd.read_parquet(out)
    model = registry(served_app.parent).load("adult", "production")
    assert len(predicted) == 2500
    # a missing text value is NaN to the model, as in the training rows (None would be a
    # category of its own to scikit-learn's imputer)
    as_read = rows.astype(object).where(rows.notna(), float("nan"))
    assert list(predicted["prediction"]) == list(model.predict(as_read))
    assert {"probability_<=50K", "probability_>50K"} <= set(predicted.columns)
    assert not (tmp_path / "out.parquet.parts").exists()


def test_a_killed_run_resumes_without_duplicates_or_gaps(served_app: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    adult_like(2500, seed=12).drop(columns=["Y"]).to_csv(source, index=False)
    model = registry(served_app.parent).load("adult", "production")
    config = load_model_app_config(served_app).app
    columns = model_columns(model, config)

    def dies_after_the_first_chunk(done: int) -> None:
        raise Killed

    out = tmp_path / "out.parquet"
    with pytest.raises(Killed):
        predict_file(config, model, columns, source, out, 1000, dies_after_the_first_chunk)
    report = predict_file(config, model, columns, source, out, 1000)
    assert (report.rows, report.parts, report.resumed_parts) == (2500, 3, 1)
    assert len(pd.read_parquet(out)) == 2500


def test_a_bad_row_stops_the_run_naming_its_row_in_the_file(
    served_app: Path, tmp_path: Path
) -> None:
    rows = adult_like(1500, seed=13).drop(columns=["Y"])
    rows.loc[1234, "age"] = 300
    rows.to_csv(tmp_path / "in.csv", index=False)
    result = CliRunner().invoke(
        app, ["predict", str(served_app), "-i", str(tmp_path / "in.csv"),
              "-o", str(tmp_path / "out.parquet"), "--chunk-rows", "1000"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "row 1234, column 'age'" in result.output
