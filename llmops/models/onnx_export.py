"""A registered tabular model as ONNX (skl2onnx; onnxmltools for LightGBM), checked against
scikit-learn before it is handed out, and laid out as a Triton model repository.

The ONNX graph takes one input per raw column, named as the column: a ``[N, 1]`` string tensor
for a column an encoder reads (one-hot, ordinal), ``[N, 1]`` float32 for the others. A missing
string is ``""`` (scikit-learn's NaN); a missing number is NaN. Classifiers answer ``label``
``[N]`` and ``probabilities`` ``[N, classes]``; regressors ``variable`` ``[N, 1]``.

    exported = export_onnx(pipeline, rows)       # converts, then parity on rows or refuses
    write_onnx(exported, Path("out"))            # out/model.onnx + out/model.json
    write_triton(exported, Path("repo"), "adult")  # repo/adult/config.pbtxt, repo/adult/1/...
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.deps import require
from llmops.errors import LLMOpsError, RegistryError
from llmops.models._mlflow import MLFLOW_EXTRA
from llmops.models._onnx_converters import (
    EXPORT_EXTRA,
    MISSING_STRING,
    custom_converters,
    for_conversion,
    register_lightgbm,
    rename_inputs,
)
from llmops.models.registry import ModelRegistry, ModelVersion

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

TOLERANCE = 1e-4
# ONNX 17 and ai.onnx.ml 3 (ONNX Runtime >= 1.13, so older Triton images load the model too);
# onnxmltools cannot write LightGBM for ai.onnx.ml 5
OPSETS = {"": 17, "ai.onnx.ml": 3}
ONNX_FILE, SUMMARY_FILE, TRITON_CONFIG = "model.onnx", "model.json", "config.pbtxt"
# ONNX element type number → (our name, Triton data type)
ELEMENT_TYPES = {
    1: ("float32", "TYPE_FP32"),
    7: ("int64", "TYPE_INT64"),
    8: ("string", "TYPE_STRING"),
    9: ("bool", "TYPE_BOOL"),
    11: ("float64", "TYPE_FP64"),
}


class ExportError(LLMOpsError):
    """A model could not be exported to ONNX, or its ONNX form does not match it."""


class UnconvertibleModel(ExportError):
    """A pipeline step or estimator that skl2onnx cannot convert (names it and why)."""


class ParityMismatch(ExportError):
    """ONNX Runtime's answers differ from scikit-learn's by more than the tolerance."""

    def __init__(self, max_abs_diff: float, tolerance: float, rows: int) -> None:
        self.max_abs_diff, self.tolerance, self.rows = max_abs_diff, tolerance, rows
        super().__init__(
            f"the ONNX model differs from the scikit-learn model by {max_abs_diff:.3g} (max abs "
            f"diff over {rows} rows; tolerance {tolerance:g}); not exported. Check the rows "
            "near a tree split (float32 vs float64), or pass a larger --tolerance if it is "
            "acceptable"
        )


@dataclass(frozen=True)
class Tensor:
    """One input or output of the ONNX graph; ``None`` in ``shape`` is the batch size."""

    name: str
    type: str  # float32, int64, string, ...
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class OnnxExport:
    """A converted model, its interface, and how closely it matched scikit-learn."""

    onnx: bytes
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    estimator: str  # the final estimator's class name
    max_abs_diff: float  # of probabilities (classifiers) or predictions (regressors)
    rows: int  # the rows the parity was measured on
    tolerance: float  # the max abs diff allowed

    def summary(self) -> dict[str, Any]:
        """What ``model.json`` holds: the interface and the parity figure."""
        return {
            "estimator": self.estimator,
            "inputs": [asdict(t) for t in self.inputs],
            "outputs": [asdict(t) for t in self.outputs],
            "missing_string": MISSING_STRING,
            "parity": {
                "max_abs_diff": self.max_abs_diff,
                "rows": self.rows,
                "tolerance": self.tolerance,
            },
        }


def export_onnx(model: Any, rows: pd.DataFrame, tolerance: float = TOLERANCE) -> OnnxExport:
    """Convert a fitted Pipeline (a ColumnTransformer, then an estimator) to ONNX and check
    it on ``rows``: ParityMismatch when the max abs diff exceeds ``tolerance`` (for a
    regressor, ``tolerance`` × the largest prediction's size when that is above 1: ONNX
    answers in float32), UnconvertibleModel when a part cannot be converted."""
    if len(rows) == 0:
        raise ExportError("no rows to check the ONNX model on: pass at least one row")
    onnx_bytes = to_onnx(model)
    expected, got = _both_answers(model, onnx_bytes, rows)
    diff = float(abs(expected - got).max())
    allowed = tolerance
    if not _is_classifier(_final_estimator(model)):  # float32 keeps ~7 significant digits
        allowed = tolerance * max(1.0, float(abs(expected).max()))
    if not diff <= allowed:  # NaN fails too
        raise ParityMismatch(diff, allowed, len(rows))
    inputs, outputs = interface(onnx_bytes)
    name = type(_final_estimator(model)).__name__
    return OnnxExport(onnx_bytes, inputs, outputs, name, diff, len(rows), allowed)


def to_onnx(model: Any) -> bytes:
    """The serialized ONNX graph of a fitted Pipeline, one input per raw column."""
    skl2onnx = require("skl2onnx", EXPORT_EXTRA)
    types = require("skl2onnx.common.data_types", EXPORT_EXTRA)
    estimator = _final_estimator(model)
    _refuse_known_gaps(estimator)
    register_lightgbm(estimator, _is_classifier(estimator))
    columns = input_columns(model)
    initial = [
        (c, types.StringTensorType([None, 1]) if s else types.FloatTensorType([None, 1]))
        for c, s in columns.items()
    ]
    options = {type(estimator): {"zipmap": False}} if _is_classifier(estimator) else None
    try:
        graph = skl2onnx.convert_sklearn(
            for_conversion(model),
            initial_types=initial,
            options=options,
            target_opset=OPSETS,
            custom_conversion_functions=custom_converters(),
        )
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
        raise _unconvertible(estimator, exc) from exc
    rename_inputs(graph, list(columns))
    return bytes(graph.SerializeToString())


def parity(model: Any, onnx_bytes: bytes, frame: pd.DataFrame) -> float:
    """Max abs diff between scikit-learn and ONNX Runtime on ``frame``: of the probabilities
    for a classifier, of the predictions for a regressor."""
    expected, got = _both_answers(model, onnx_bytes, frame)
    numpy = require("numpy", MLFLOW_EXTRA)
    return float(numpy.abs(expected - got).max())


def _both_answers(model: Any, onnx_bytes: bytes, frame: pd.DataFrame) -> tuple[Any, Any]:
    """scikit-learn's and ONNX Runtime's probabilities (or predictions), as float64 arrays."""
    numpy = require("numpy", MLFLOW_EXTRA)
    rows = normalized(frame)
    session = session_for(onnx_bytes)
    outputs = [o.name for o in session.get_outputs()]
    classifier = _is_classifier(_final_estimator(model))
    wanted = "probabilities" if classifier and "probabilities" in outputs else outputs[-1]
    (got,) = session.run([wanted], onnx_inputs(rows, session))
    expected = model.predict_proba(rows) if classifier else model.predict(rows)
    shape = (len(rows), -1)
    return (
        numpy.asarray(expected, dtype=float).reshape(shape),
        numpy.asarray(got, dtype=float).reshape(shape),
    )


def session_for(onnx_bytes: bytes) -> Any:
    """An ONNX Runtime session on the CPU."""
    onnxruntime = require("onnxruntime", EXPORT_EXTRA)
    return onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])


def onnx_inputs(frame: pd.DataFrame, session: Any) -> dict[str, np.ndarray]:
    """A table's columns as the graph's inputs: ``[N, 1]`` strings (missing → ``""``) or
    float32; ExportError naming the absent columns. Plain numpy per column: pandas' own
    where/astype cost 20× more on a 256-row batch."""
    numpy = require("numpy", MLFLOW_EXTRA)
    pandas = require("pandas", MLFLOW_EXTRA)
    absent = [i.name for i in session.get_inputs() if i.name not in frame.columns]
    if absent:
        raise ExportError(f"the rows lack the model's input columns: {', '.join(absent)}")
    feeds = {}
    for spec in session.get_inputs():
        column = frame[spec.name]
        if spec.type == "tensor(string)":
            values = column.to_numpy(dtype=object)
            missing = pandas.isna(values)
            if missing.any():
                values = values.copy()
                values[missing] = MISSING_STRING
            feeds[spec.name] = values.astype(str).reshape(-1, 1)
        else:
            if column.dtype == object:  # numbers with None among them (JSON rows)
                column = pandas.to_numeric(column)
            feeds[spec.name] = column.to_numpy(dtype=numpy.float32).reshape(-1, 1)
    return feeds


def normalized(frame: pd.DataFrame) -> pd.DataFrame:
    """``None`` as NaN in text columns: scikit-learn's imputers treat NaN as missing but None
    as a category of its own; files read with pandas give NaN, JSON rows may give None."""
    pandas = require("pandas", MLFLOW_EXTRA)
    rows = frame.copy()
    for column in rows.columns:
        if rows[column].dtype == object:
            rows[column] = rows[column].where(rows[column].notna(), float("nan"))
    return pandas.DataFrame(rows)


def input_columns(model: Any) -> dict[str, bool]:
    """``{column: is_string}`` of the raw columns the first ColumnTransformer reads, in the
    fitted model's column order; a column is a string when an encoder fitted on text reads it."""
    prepare = model.steps[0][1] if hasattr(model, "steps") else None
    if prepare is None or not hasattr(prepare, "transformers_"):
        raise UnconvertibleModel(
            f"cannot export a {type(model).__name__} to ONNX: llmops exports a fitted Pipeline "
            "whose first step is a ColumnTransformer (what `llmops train` makes)"
        )
    names = list(getattr(prepare, "feature_names_in_", []))
    used: dict[str, bool] = {}
    for _, part, columns in prepare.transformers_:
        if isinstance(part, str) and part == "drop":
            continue
        if isinstance(columns, slice):
            columns = names[columns]
        for column in [columns] if isinstance(columns, str | int) else list(columns):
            name = names[column] if isinstance(column, int) else str(column)
            used[name] = used.get(name, False) or _reads_text(part)
    order = {name: index for index, name in enumerate(names)}
    return dict(sorted(used.items(), key=lambda item: order.get(item[0], len(order))))


def interface(onnx_bytes: bytes) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """The graph's inputs and outputs with their element types and shapes."""
    onnx = require("onnx", EXPORT_EXTRA)
    graph = onnx.load_from_string(onnx_bytes).graph

    def tensor(value: Any) -> Tensor:
        kind = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in kind.shape.dim)
        if kind.elem_type not in ELEMENT_TYPES:
            raise ExportError(f"tensor '{value.name}' has ONNX element type {kind.elem_type}")
        return Tensor(value.name, ELEMENT_TYPES[kind.elem_type][0], shape)

    return tuple(map(tensor, graph.input)), tuple(map(tensor, graph.output))


def write_onnx(exported: OnnxExport, folder: Path) -> Path:
    """``folder/model.onnx`` and ``folder/model.json`` (interface, parity); returns the first."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ONNX_FILE).write_bytes(exported.onnx)
    (folder / SUMMARY_FILE).write_text(json.dumps(exported.summary(), indent=2) + "\n")
    return folder / ONNX_FILE


def write_triton(
    exported: OnnxExport, repository: Path, name: str, max_batch_size: int = 512, source: str = ""
) -> Path:
    """A Triton model repository entry: ``repository/name/config.pbtxt`` and
    ``repository/name/1/model.onnx``; returns the model's folder. ``source`` (e.g.
    "adult version 3") goes into the config's first comment line."""
    folder = repository / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "1" / ONNX_FILE).write_bytes(exported.onnx)
    config = triton_config(exported, name, max_batch_size, source)
    (folder / TRITON_CONFIG).write_text(config)
    return folder


def triton_config(
    exported: OnnxExport, name: str, max_batch_size: int = 512, source: str = ""
) -> str:
    """config.pbtxt for Triton's ONNX Runtime backend, with dynamic batching. The batch
    dimension is implied by max_batch_size; a batch-only tensor (a classifier's label) is
    declared ``dims: [ 1 ]`` with ``reshape: { shape: [ ] }``, as Triton asks."""
    lines = [
        f"# {source or name} ({exported.estimator}) exported by llmops; parity with "
        f"scikit-learn: max abs diff {exported.max_abs_diff:.3g} on {exported.rows} rows",
        '# a missing string is "", a missing number NaN',
        f'name: "{name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch_size}",
        *_tensors("input", exported.inputs),
        *_tensors("output", exported.outputs),
        "dynamic_batching { }",
    ]
    return "\n".join(lines) + "\n"


def _tensors(kind: str, tensors: Sequence[Tensor]) -> Iterator[str]:
    yield f"{kind} ["
    for index, tensor in enumerate(tensors):
        dims = [-1 if d is None else d for d in tensor.shape[1:]]
        data_type = dict(ELEMENT_TYPES.values())[tensor.type]
        shape = ", ".join(map(str, dims or [1]))
        reshape = "" if dims else " reshape: { shape: [ ] }"
        comma = "," if index < len(tensors) - 1 else ""
        yield (
            f'  {{ name: "{tensor.name}" data_type: {data_type} dims: [ {shape} ]{reshape} }}'
            f"{comma}"
        )
    yield "]"


def load_registered(registry: ModelRegistry, name: str, ref: str) -> tuple[Any, Any, ModelVersion]:
    """Version ``ref`` of ``name``: the fitted model, the input example MLflow stored with it
    (a DataFrame, or None) and the version."""
    version = registry.get(name, ref)
    artifacts = require("mlflow.artifacts", MLFLOW_EXTRA)
    sklearn_flavor = require("mlflow.sklearn", MLFLOW_EXTRA)
    models = require("mlflow.models", MLFLOW_EXTRA)
    exceptions = require("mlflow.exceptions", MLFLOW_EXTRA)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = artifacts.download_artifacts(
                artifact_uri=version.source, dst_path=tmp, tracking_uri=registry.tracking_uri
            )
            model = sklearn_flavor.load_model(local)
            example = models.Model.load(local).load_input_example(local)
    except exceptions.MlflowException as exc:
        raise RegistryError(f"loading '{name}@{ref}' failed: {exc.message}") from exc
    return model, example, version


def read_rows(path: Path) -> pd.DataFrame:
    """Rows for the parity check from a CSV file (a header line of column names)."""
    pandas = require("pandas", MLFLOW_EXTRA)
    try:
        return pandas.read_csv(path, skipinitialspace=True)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: cannot read it as CSV: {exc}") from None


def _final_estimator(model: Any) -> Any:
    return model.steps[-1][1] if hasattr(model, "steps") else model


def _is_classifier(estimator: Any) -> bool:
    return hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_")


def _reads_text(part: Any) -> bool:
    """True when an encoder in ``part`` was fitted on strings."""
    steps = [step for _, step in getattr(part, "steps", [])] or [part]
    for step in steps:
        categories = getattr(step, "categories_", None)
        if categories is not None:
            return any(getattr(c, "dtype", None) is not None and c.dtype.kind in "OUS"
                       for c in categories)  # fmt: skip
    return False


def _refuse_known_gaps(estimator: Any) -> None:
    """Estimators whose conversion is known to be wrong, refused before converting."""
    categorical = getattr(estimator, "is_categorical_", None)
    if categorical is not None and bool(categorical.any()):
        raise UnconvertibleModel(
            f"cannot export {type(estimator).__name__} with categorical_features to ONNX: "
            "skl2onnx converts its categorical splits as numeric thresholds. Drop "
            "categorical_features (features.ordinal and features.categorical already encode "
            "text columns)"
        )


def _unconvertible(estimator: Any, exc: Exception) -> UnconvertibleModel:
    name = f"{type(estimator).__module__}.{type(estimator).__name__}"
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UnconvertibleModel(
        f"cannot export the estimator {name} to ONNX: {reason[:300]}. skl2onnx converts "
        "logistic_regression, random_forest, hist_gradient_boosting and (with onnxmltools) "
        "lightgbm; see https://onnx.ai/sklearn-onnx/supported.html"
    )
