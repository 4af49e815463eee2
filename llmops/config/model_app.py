"""The shape of a model app config (``kind: model``): a tabular model trained, gated,
registered and served from one file. Same YAML system as RAG apps: ``file:line:col`` errors,
``${ENV}`` interpolation, the JSON Schema, ``llmops validate``.

    kind: model
    name: adult
    data:
      train: {path: data/adult.data}
      test: {path: data/adult.test}
    target: Y
    features: {numeric: [age, hours-per-week], categorical: [workclass, sex]}
    model: {type: hist_gradient_boosting}
    search: {n_trials: 30, metric: roc_auc, space: {learning_rate: {low: 0.01, high: 0.3}}}
    gates: ["roc_auc >= 0.92"]
"""

from __future__ import annotations

import re
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from llmops.config.component import Strict

Task = Literal["classification", "regression"]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,62}")


class TableSource(Strict):
    """A table in a file: CSV or Parquet (by extension, or ``format``)."""

    path: str = Field(description="Relative to the config file.")
    format: Literal["csv", "parquet"] | None = Field(None, description="Default: by extension.")
    na_values: list[str] = Field(
        default_factory=list, description="Extra strings read as missing, e.g. ['?']."
    )
    skip_initial_space: bool = Field(True, description="CSV: ignore spaces after delimiters.")


class SplitConfig(Strict):
    """How the validation rows (and the test rows, when no test file is given) are chosen:
    by ratio with a seed (stratified for classification), by a column holding
    train / valid / test, or by time (the latest rows are held out)."""

    valid_ratio: float = Field(0.2, gt=0, lt=1)
    test_ratio: float = Field(0.2, gt=0, lt=1, description="Used only without data.test.")
    seed: int = 42
    column: str | None = Field(None, description="A column of train / valid / test labels.")
    time_column: str | None = Field(None, description="Hold out the latest rows by this column.")

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        if self.column and self.time_column:
            raise ValueError("give one of split.column and split.time_column, not both")
        return self


class DataConfig(Strict):
    train: TableSource
    test: TableSource | None = Field(None, description="Held-out rows; default: split off.")
    split: SplitConfig = Field(default_factory=lambda: SplitConfig())
    target_map: dict[str, str] = Field(
        default_factory=dict,
        description="Target values to rename, e.g. {'>50K.': '>50K'} when files disagree.",
    )


class ColumnRule(Strict):
    """Checks on one column (pandera): type, missing values, range, allowed values."""

    type: Literal["int", "float", "str", "bool"] | None = None
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: list[Any] | None = None
    unique: bool = False


class SchemaConfig(Strict):
    """What the data must look like: per-column rules and table-wide limits. The same rules
    check training data, batch inputs and ``/predict`` rows."""

    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    min_rows: int = Field(1, ge=1)
    max_null_ratio: float = Field(1.0, ge=0, le=1, description="Per column.")
    max_duplicate_ratio: float = Field(1.0, ge=0, le=1, description="Whole-row duplicates.")
    min_class_share: float = Field(
        0.0, ge=0, lt=1, description="Classification: the rarest label's least share."
    )


class FeatureConfig(Strict):
    """The columns the model sees and how each is prepared (one scikit-learn Pipeline with the
    model, so training and serving cannot skew)."""

    numeric: list[str] = Field(default_factory=list, description="Imputed (median), scaled.")
    categorical: list[str] = Field(
        default_factory=list, description="Imputed (most frequent), one-hot (unknown ignored)."
    )
    ordinal: list[str] = Field(default_factory=list, description="Imputed, ordinal-encoded.")
    passthrough: list[str] = Field(default_factory=list, description="Used as they are.")

    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical, *self.ordinal, *self.passthrough]

    @model_validator(mode="after")
    def _some_and_distinct(self) -> Self:
        columns = self.columns()
        if not columns:
            raise ValueError("name at least one feature column")
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(f"columns listed twice: {', '.join(repeated)}")
        return self


class ModelSpec(Strict):
    """An estimator by registry name and its fixed parameters (the search tunes the rest)."""

    type: str = Field(description="logistic_regression, random_forest, hist_gradient_boosting…")
    params: dict[str, Any] = Field(default_factory=dict)


class ParamSpace(Strict):
    """One searched parameter: a float or int range (``log`` for scales), or ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = Field(False, description="Draw integers from [low, high].")
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> Self:
        ranged = self.low is not None and self.high is not None
        if ranged == (self.choices is not None):
            raise ValueError("give low and high, or choices")
        if ranged and self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and (self.low is None or self.low <= 0):
            raise ValueError("a log scale needs low > 0")
        return self


class SearchConfig(Strict):
    """Optuna: the study lives in SQLite under data_dir, so a killed search resumes."""

    n_trials: int = Field(20, ge=1, le=10_000)
    timeout_s: float | None = Field(None, gt=0)
    seed: int = 42
    cv_folds: int = Field(3, ge=2, le=20, description="Each trial's score: mean over folds.")
    metric: str = Field("roc_auc", description="Maximised (minimised for log_loss, rmse, mae).")
    space: dict[str, ParamSpace] = Field(default_factory=dict)


class RegistryConfig(Strict):
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default: sqlite in data_dir."
    )
    model_name: str | None = Field(None, description="Registered name; default: the app name.")


class ServingConfig(Strict):
    """``POST /predict/{name}``: which version answers, and the request limits."""

    alias: str = Field(
        "production",
        description="The registered version served follows this alias: promote or roll back "
        "and running servers switch without a restart.",
    )
    refresh_s: float = Field(10.0, gt=0, description="How often the alias is looked up.")
    max_rows: int = Field(1000, ge=1, le=100_000, description="Rows per request.")
    max_batch_rows: int = Field(
        512, ge=1, description="Rows predicted together when requests arrive at once."
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(5_000_000, ge=1024)


class ModelAppConfig(Strict):
    """A tabular model: its data, checks, features, estimator, search, gates and registry."""

    kind: Literal["model"]
    name: str = Field(description="3-63 letters, digits, _ or -; the served model's name.")
    data_dir: str = Field(".llmops", description="Studies, runs, reports; relative to the file.")
    task: Task = "classification"
    data: DataConfig
    target: str
    positive_class: str | None = Field(
        None, description="Binary classification: the class whose probability is scored."
    )
    schema_: SchemaConfig = Field(default_factory=lambda: SchemaConfig(), alias="schema")
    features: FeatureConfig
    model: ModelSpec
    search: SearchConfig | None = None
    gates: list[str] = Field(default_factory=list, description="e.g. 'roc_auc >= 0.92'.")
    slices: list[str] = Field(
        default_factory=list, description="Columns whose groups get their own metrics."
    )
    fairness: list[str] = Field(
        default_factory=list,
        description="Binary classification: columns (e.g. sex) across whose groups the "
        "demographic parity and equalized odds differences are reported, with 95 % CIs.",
    )
    registry: RegistryConfig = Field(default_factory=lambda: RegistryConfig())
    serving: ServingConfig = Field(default_factory=lambda: ServingConfig())

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("use 3-63 letters, digits, _ or -, starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _target_not_a_feature(self) -> Self:
        if self.target in self.features.columns():
            raise ValueError(f"the target '{self.target}' is also listed as a feature")
        return self

    @property
    def model_name(self) -> str:
        return self.registry.model_name or self.name
