"""Data validation (pandera) from the schema section: every failed rule reported with its
column, count and sample rows; the per-row rules alone for served rows."""

from __future__ import annotations

import pandas as pd

from llmops.config.model_app import SchemaConfig
from llmops.ml.validation import validate
from tests.ml.adult_like import adult_like

SCHEMA = SchemaConfig.model_validate(
    {
        "min_rows": 50,
        "max_null_ratio": 0.5,
        "max_duplicate_ratio": 0.2,
        "min_class_share": 0.05,
        "columns": {
            "age": {"type": "int", "min": 17, "max": 100, "nullable": False},
            "sex": {"type": "str", "allowed": ["Male", "Female"]},
            "Y": {"type": "str", "allowed": ["<=50K", ">50K"], "nullable": False},
        },
    }
)


def test_clean_data_passes() -> None:
    report = validate(adult_like(200), SCHEMA, "Y", "classification")
    assert report.ok and report.rows == 200, report.to_text()


def test_each_broken_rule_names_its_column_count_and_rows() -> None:
    frame = adult_like(200)
    frame.loc[3, "age"] = 150
    frame.loc[[5, 6], "sex"] = "Unknown"
    frame.loc[7, "age"] = None
    report = validate(frame, SCHEMA, "Y", "classification")
    found = {(v.column, v.rule): v for v in report.violations}
    too_old = found[("age", "less_than_or_equal_to(100.0)")]
    assert too_old.count == 1 and too_old.samples[0]["index"] == 3
    assert too_old.samples[0]["age"] == 150
    assert found[("sex", "isin(['Male', 'Female'])")].count == 2
    assert ("age", "not_nullable") in found
    text = report.to_text()
    assert "age: less_than_or_equal_to(100.0) failed for 1 row(s)" in text
    assert "<td>sex</td>" in report.to_html("Data validation")


def test_table_wide_limits() -> None:
    few = adult_like(20)
    few["Y"] = "<=50K"  # one class only: below the 5 % share for the other
    report = validate(pd.concat([few, few]), SCHEMA, "Y", "classification")
    rules = {v.rule for v in report.violations if v.column is None}
    assert "at least 50 rows" in rules
    assert "duplicate-row ratio at most 0.2" in rules


def test_served_rows_are_held_to_the_row_rules_only() -> None:
    rows = adult_like(3).drop(columns=["Y"])
    assert validate(rows, SCHEMA, "Y", "classification", training=False).ok
    rows["age"] = rows["age"].astype(object)
    rows.loc[0, "age"] = "old"
    report = validate(rows, SCHEMA, "Y", "classification", training=False)
    assert report.violations and {v.column for v in report.violations} == {"age"}
    assert report.violations[0].samples[0]["index"] == 0
