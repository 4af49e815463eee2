"""What skl2onnx needs beside its own converters to reproduce llmops' pipelines exactly: a copy
of the pipeline its string imputers accept, StandardScaler in float64, rare categories of a
one-hot encoder, HistGradientBoosting under protobuf >= 6, LightGBM (onnxmltools), and the
column names back on the graph's inputs. Each replacement is passed per conversion
(``custom_conversion_functions``); only LightGBM's registration is global, as onnxmltools
documents it."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from llmops.deps import require

EXPORT_EXTRA = "export"  # the pip extra that installs skl2onnx, onnxmltools, onnxruntime
ML_EXTRA = "ml"
MISSING_STRING = ""  # what a missing string becomes in the ONNX graph (NaN in scikit-learn)
_FLOAT, _DOUBLE = 1, 11  # ONNX TensorProto element types
Converter = Callable[[Any, Any, Any], None]  # (scope, operator, container)


def for_conversion(model: Any) -> Any:
    """A copy whose text imputers look for ``""``: skl2onnx converts a string imputer only
    when its missing value is a string (the graph's callers send ``""`` for NaN)."""
    impute = require("sklearn.impute", ML_EXTRA)
    converted = copy.deepcopy(model)

    def visit(part: Any) -> None:
        if isinstance(part, impute.SimpleImputer) and part.statistics_.dtype == object:
            missing = part.missing_values
            if not isinstance(missing, str) and missing is not None and math.isnan(missing):
                part.missing_values = MISSING_STRING
        for _, step in getattr(part, "steps", []):
            visit(step)
        for _, step, _ in getattr(part, "transformers_", []):
            visit(step)

    visit(converted)
    return converted


def custom_converters() -> dict[type, Converter]:
    """Converters that replace skl2onnx's own for one conversion."""
    ensemble = require("sklearn.ensemble", ML_EXTRA)
    preprocessing = require("sklearn.preprocessing", ML_EXTRA)
    registration = require("skl2onnx.common._registration", EXPORT_EXTRA)
    custom: dict[type, Converter] = {
        preprocessing.StandardScaler: _standard_scaler_in_double,
        preprocessing.OneHotEncoder: _one_hot_with_rare(
            registration.get_converter("SklearnOneHotEncoder")
        ),
    }
    for cls in (ensemble.HistGradientBoostingClassifier, ensemble.HistGradientBoostingRegressor):
        custom[cls] = _bools_as_ints(registration.get_converter(f"Sklearn{cls.__name__}"))
    return custom


def register_lightgbm(estimator: Any, classifier: bool) -> None:
    """LightGBM's converter (onnxmltools) registered with skl2onnx, as onnxmltools documents."""
    if not type(estimator).__module__.startswith("lightgbm"):
        return
    skl2onnx = require("skl2onnx", EXPORT_EXTRA)
    shapes = require("skl2onnx.common.shape_calculator", EXPORT_EXTRA)
    lightgbm = require("onnxmltools.convert.lightgbm.operator_converters.LightGbm", EXPORT_EXTRA)
    skl2onnx.update_registered_converter(
        type(estimator),
        f"LightGbm{type(estimator).__name__}",
        shapes.calculate_linear_classifier_output_shapes
        if classifier
        else shapes.calculate_linear_regressor_output_shapes,
        lightgbm.convert_lightgbm,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]} if classifier else None,
    )


def rename_inputs(graph: Any, columns: list[str]) -> None:
    """skl2onnx makes names safe (``hours-per-week`` → ``hours_per_week``); the graph's
    inputs get the column names back, so a row's columns map straight onto them."""
    renamed = {given.name: column for given, column in zip(graph.graph.input, columns, strict=True)}
    for given in graph.graph.input:
        given.name = renamed[given.name]
    for node in graph.graph.node:
        for index, name in enumerate(node.input):
            if name in renamed:
                node.input[index] = renamed[name]


def _standard_scaler_in_double(scope: Any, operator: Any, container: Any) -> None:
    """StandardScaler in float64, as scikit-learn computes it, then cast to float32. skl2onnx
    scales in float32, an ulp or two away from scikit-learn's value, and trees put splits right
    on training values (a random forest's thresholds are often a float32 value): that ulp sends
    a row down the other branch (probabilities 0.1 apart on the tests' data)."""
    scaler = operator.raw_operator
    current = scope.get_unique_variable_name("scaler_double")
    container.add_node("Cast", operator.inputs[0].full_name, current, to=_DOUBLE)
    for op_type, values in (("Sub", scaler.mean_), ("Div", scaler.scale_)):
        if values is None:  # with_mean=False or with_std=False
            continue
        constant = scope.get_unique_variable_name(f"scaler_{op_type.lower()}")
        container.add_initializer(constant, _DOUBLE, [len(values)], [float(v) for v in values])
        result = scope.get_unique_variable_name("scaler_out")
        container.add_node(
            op_type, [current, constant], result, name=scope.get_unique_operator_name(op_type)
        )
        current = result
    container.add_node("Cast", current, operator.outputs[0].full_name, to=_FLOAT)


def _one_hot_with_rare(fallback: Converter) -> Converter:
    """OneHotEncoder whose rare categories (``min_frequency``) share one last column, as
    scikit-learn encodes them; skl2onnx refuses those for an encoder fed one merged input.
    Each column: Gather it, one-hot over frequent + rare categories, then a 0/1 matrix sums
    the rare ones into one column. Anything else goes to skl2onnx's converter."""

    def converter(scope: Any, operator: Any, container: Any) -> None:
        encoder = operator.raw_operator
        rare = getattr(encoder, "infrequent_categories_", None) or []
        types = require("skl2onnx.common.data_types", EXPORT_EXTRA)
        if (
            len(operator.inputs) != 1
            or not isinstance(operator.inputs[0].type, types.StringTensorType)
            or encoder.handle_unknown != "ignore"
            or getattr(encoder, "drop_idx_", None) is not None
            or all(r is None for r in rare)
        ):
            fallback(scope, operator, container)
            return
        pieces, width = [], 0
        for index, categories in enumerate(encoder.categories_):
            piece, columns = _encode_column(scope, container, operator, index, categories)
            pieces.append(piece)
            width += columns
        joined = scope.get_unique_variable_name("one_hot_joined")
        container.add_node("Concat", pieces, joined, axis=-1)
        shape = scope.get_unique_variable_name("one_hot_shape")
        container.add_initializer(shape, 7, [2], [-1, width])  # INT64
        container.add_node("Reshape", [joined, shape], operator.outputs[0].full_name)

    return converter


def _encode_column(
    scope: Any, container: Any, operator: Any, index: int, categories: Any
) -> tuple[str, int]:
    """One column of a one-hot encoder with rare categories: ``[N, 1, width]`` and width."""
    numpy = require("numpy", ML_EXTRA)
    rare = operator.raw_operator.infrequent_categories_[index]
    rare = [] if rare is None else [str(c) for c in rare]
    common = [str(c) for c in categories if str(c) not in rare]
    position = scope.get_unique_variable_name("one_hot_index")
    container.add_initializer(position, 7, [1], [index])
    column = scope.get_unique_variable_name("one_hot_column")
    container.add_node("Gather", [operator.inputs[0].full_name, position], column, axis=1)
    hot = scope.get_unique_variable_name("one_hot")
    container.add_node(
        "OneHotEncoder", column, hot, op_domain="ai.onnx.ml", zeros=1,
        cats_strings=[c.encode() for c in common + rare],
        name=scope.get_unique_operator_name("OneHotEncoder"),
    )  # fmt: skip
    width = len(common) + (1 if rare else 0)
    if not rare:
        return hot, width
    merge = numpy.zeros((len(common) + len(rare), width), dtype=numpy.float32)
    merge[numpy.arange(len(common)), numpy.arange(len(common))] = 1.0
    merge[len(common) :, -1] = 1.0
    matrix = scope.get_unique_variable_name("one_hot_merge")
    container.add_initializer(matrix, _FLOAT, list(merge.shape), merge.ravel().tolist())
    merged = scope.get_unique_variable_name("one_hot_merged")
    container.add_node("MatMul", [hot, matrix], merged)
    return merged, width


def _bools_as_ints(convert: Converter) -> Converter:
    """skl2onnx gives a HistGradientBoosting leaf's missing-value flag as ``False``, which
    protobuf >= 6 refuses in an int list: booleans in list attributes become ints."""

    def converter(scope: Any, operator: Any, container: Any) -> None:
        add_node = container.add_node

        def add(*args: Any, **attrs: Any) -> Any:
            for key, value in attrs.items():
                if isinstance(value, list) and any(isinstance(v, bool) for v in value):
                    attrs[key] = [int(v) if isinstance(v, bool) else v for v in value]
            return add_node(*args, **attrs)

        container.add_node = add
        try:
            convert(scope, operator, container)
        finally:
            del container.add_node

    return converter
