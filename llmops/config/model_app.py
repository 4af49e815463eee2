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

Or, with the rows from a Feast feature store (the ``feast`` extra) instead of a file:
``data: {feast: {repo: features/, entities: labels.parquet, entity_keys: [customer_id],
features: ["customer_stats:age", ...]}}``.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from llmops.config.auth import AuthConfig, CorsConfig
from llmops.config.component import AppName, Strict
from llmops.config.experiment import ExperimentPolicy, RampConfig
from llmops.config.monitoring import TracingConfig
from llmops.config.schema import SHUTDOWN_TIMEOUT

Task = Literal["classification", "regression"]
Trigger = Literal["drift", "performance", "schedule"]


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


class FeastSource(Strict):
    """Training rows from a Feast feature store: the entity table (keys, ``event_timestamp``,
    target) joined point-in-time to the features by ``get_historical_features``. Served
    ``/predict`` rows that send only the entity key(s) get the features from the online store.
    Needs the ``feast`` extra."""

    repo: str = Field(
        description="The feature repository: a folder holding feature_store.yaml, already "
        "applied (`feast apply`); relative to the config file."
    )
    entities: str = Field(
        description="The entity table, CSV or Parquet (by extension): the entity key "
        "column(s), `event_timestamp` (the time each row's features are read as of) and the "
        "target; relative to the config file."
    )
    features: list[str] | str = Field(
        description="Feature references 'view:feature' (each column keeps the feature's "
        "name), or the name of a feature service."
    )
    entity_keys: list[str] = Field(
        min_length=1,
        description="The entity join key column(s), e.g. [customer_id]: in the entity table, "
        "and all a /predict row needs to send for its features to be looked up.",
    )

    @field_validator("features")
    @classmethod
    def _references(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("name a feature service, or list 'view:feature' references")
            return value
        if not value:
            raise ValueError("list at least one 'view:feature' reference")
        bad = [
            ref for ref in value if ref.count(":") != 1 or ref.startswith(":") or ref.endswith(":")
        ]
        if bad:
            raise ValueError(
                f"not a 'view:feature' reference: {', '.join(bad)} (e.g. customer_stats:age)"
            )
        return value

    def feature_list(self) -> list[str] | None:
        """The references when listed; None for a feature service."""
        return None if isinstance(self.features, str) else list(self.features)


class DataConfig(Strict):
    """Where the training rows come from: a file (``train``) or a Feast feature store
    (``feast``), exactly one of them."""

    train: TableSource | None = Field(None, description="The training rows in a file.")
    feast: FeastSource | None = Field(
        None, description="The training rows from a Feast feature store instead of a file."
    )
    test: TableSource | None = Field(
        None, description="Held-out rows (a file; not with feast); default: split off."
    )
    split: SplitConfig = Field(default_factory=lambda: SplitConfig())
    target_map: dict[str, str] = Field(
        default_factory=dict,
        description="Target values to rename, e.g. {'>50K.': '>50K'} when files disagree.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.train is None) == (self.feast is None):
            both = self.train is not None
            raise ValueError(
                "give data.train (a file) or data.feast (a Feast feature store), not both"
                if both
                else "give data.train (a file) or data.feast (a Feast feature store): "
                "where the training rows come from"
            )
        if self.feast is not None and self.test is not None:
            raise ValueError(
                "data.test is a file of finished rows; with data.feast the test rows are split "
                "off the entity table (split.test_ratio, or split.time_column: event_timestamp)"
            )
        return self


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
    onnx: bool = Field(
        False,
        description="Also export the model to ONNX at registration (needs the export extra): "
        "checked against scikit-learn on up to 1,000 test rows (max abs diff of probabilities "
        "at most 1e-4, else the job fails before registering), logged as onnx/model.onnx in "
        "the run, the version tagged onnx.max_abs_diff. `llmops models export` does the same "
        "for any registered version.",
    )


class ServingConfig(Strict):
    """``POST /predict/{name}``: which version answers, and the request limits."""

    alias: str = Field(
        "production",
        description="The registered version served follows this alias: promote or roll back "
        "and running servers switch without a restart.",
    )
    refresh_s: float = Field(10.0, gt=0, description="How often the alias is looked up.")
    runtime: Literal["sklearn", "onnx"] = Field(
        "sklearn",
        description="onnx: predict with ONNX Runtime from the ONNX file a version was "
        "registered with (registry.onnx: true; parity checked then); versions without one are "
        "served by scikit-learn.",
    )
    max_rows: int = Field(1000, ge=1, le=100_000, description="Rows per request.")
    max_batch_rows: int = Field(
        512, ge=1, description="Rows predicted together when requests arrive at once."
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(5_000_000, ge=1024)
    shutdown_timeout_s: int = SHUTDOWN_TIMEOUT
    auth: AuthConfig = Field(
        default_factory=AuthConfig, description="API keys, scopes and per-key rate limits."
    )
    cors: CorsConfig = Field(
        default_factory=lambda: CorsConfig(), description="Browser origins allowed (CORS)."
    )


class ModelVariant(Strict):
    """A registered version of the model: the one an alias points at (followed as the alias
    moves) or a fixed version number."""

    alias: str | None = Field(None, description="e.g. production, candidate.")
    version: int | None = Field(None, ge=1, description="A fixed version number.")

    @model_validator(mode="after")
    def _one_reference(self) -> Self:
        if (self.alias is None) == (self.version is None):
            raise ValueError("give a variant an alias or a version (one of them)")
        return self

    @property
    def ref(self) -> str:
        """As the registry takes it: the alias, or the number as text."""
        return self.alias if self.alias is not None else str(self.version)


class ModelRoutingConfig(ExperimentPolicy):
    """``routing:``: the RAG apps' experiment strategies over registered versions: sticky
    weighted A/B, ``shadow`` (the second version predicts every request in the background;
    agreement reported), ``canary`` (ramp with SLO rollback) and ``thompson`` (rewarded by the
    labels sent to ``POST /labels``)."""

    variants: dict[str, ModelVariant] = Field(
        min_length=2, description="Variant name → {alias: ...} or {version: N}."
    )


class PredictionLogConfig(Strict):
    """Every predicted row (features, prediction, variant, version) in SQLite under data_dir,
    so ``POST /labels`` can join true labels to it, days later if need be."""

    enabled: bool = True
    retention_days: float | None = Field(30.0, gt=0, description="Older rows are deleted.")
    live_window: int = Field(
        1000, ge=10, description="Newest labelled rows per version behind the live metrics."
    )


class ModelDriftConfig(Strict):
    """Feature and prediction drift per served version against its training rows: KS or
    chi-squared per column, judged only with a PSI effect size too (see table_drift)."""

    enabled: bool = True
    window: int = Field(500, ge=10, description="Newest served rows per version compared.")
    min_rows: int = Field(100, ge=10, description="Fewer served rows are not judged.")
    check_every: int = Field(100, ge=1, description="Served rows between two checks.")
    min_interval_s: float = Field(
        5.0,
        ge=0,
        description="Least seconds between two checks of a version (a check costs "
        "tens of ms of CPU; under heavy traffic, check_every alone would run one per request).",
    )
    alpha: float = Field(0.01, gt=0, lt=1, description="Family-wise, Bonferroni over columns.")
    min_psi: float = Field(0.1, gt=0, description="The effect size a drifting column needs.")
    reference_rows: int = Field(5000, ge=100, description="Training rows kept as reference.")


def _default_triggers() -> list[Trigger]:
    return ["drift"]


def _retrain_canary() -> RampConfig:
    return RampConfig(stages=[0.1, 0.5, 1.0], window=100)


class RetrainConfig(Strict):
    """``monitoring.retrain``: what starts the training job again, on which data, and how its
    candidate is rolled out: gates against production, then a canary ramp that promotes it
    when every stage's window is healthy and rolls it back otherwise."""

    triggers: list[Trigger] = Field(
        default_factory=_default_triggers,
        description="drift: the production version's features drift; performance: its live "
        "metrics break `performance`; schedule: every `every_s` seconds.",
    )
    every_s: float | None = Field(None, gt=0, description="schedule: seconds between runs.")
    performance: list[str] = Field(
        default_factory=list,
        description="Gates on live metrics from labelled predictions, e.g. 'accuracy >= 0.8'.",
    )
    min_labels: int = Field(100, ge=1, description="Labelled rows before `performance` is judged.")
    gates: list[str] | None = Field(
        None,
        description="Gates a retrained candidate must pass besides the app's `gates` "
        "(default: 'roc_auc >= production - 0.01', or r2 for regression).",
    )
    data: DataConfig | None = Field(
        None, description="The new data to train on (default: the app's `data`, read again)."
    )
    cooldown_s: float = Field(3600.0, ge=0, description="Least time between two retrainings.")
    canary: RampConfig = Field(
        default_factory=_retrain_canary,
        description="The candidate's ramp beside production; at 100 % it is promoted.",
    )

    @model_validator(mode="after")
    def _triggers_have_settings(self) -> Self:
        if "schedule" in self.triggers and self.every_s is None:
            raise ValueError("retraining on a schedule needs every_s")
        if "performance" in self.triggers and not self.performance:
            raise ValueError(
                "retraining on performance needs `performance` gates, e.g. ['accuracy >= 0.8']"
            )
        return self


class ModelMonitoringConfig(Strict):
    predictions: PredictionLogConfig = Field(default_factory=lambda: PredictionLogConfig())
    drift: ModelDriftConfig = Field(default_factory=lambda: ModelDriftConfig())
    retrain: RetrainConfig | None = None
    tracing: TracingConfig = Field(default_factory=lambda: TracingConfig())


class ModelAppConfig(Strict):
    """A tabular model: its data, checks, features, estimator, search, gates and registry."""

    kind: Literal["model"]
    name: AppName = Field(description="3-63 letters, digits, _ or -; the served model's name.")
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
    routing: ModelRoutingConfig | None = Field(
        None, description="Split traffic among registered versions (default: serving.alias)."
    )
    monitoring: ModelMonitoringConfig = Field(default_factory=lambda: ModelMonitoringConfig())

    @model_validator(mode="after")
    def _target_not_a_feature(self) -> Self:
        if self.target in self.features.columns():
            raise ValueError(f"the target '{self.target}' is also listed as a feature")
        return self

    @property
    def model_name(self) -> str:
        return self.registry.model_name or self.name
