"""Turn pydantic validation errors into located, friendly config issues."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from llmops.config.yaml_source import Loc, SourceMap, dotted
from llmops.errors import ConfigIssue
from llmops.registry import suggest

_TYPE_NAMES = {
    "int_parsing": "an integer",
    "int_parsing_size": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "less_than_equal": ("le", "at most"),
    "greater_than": ("gt", "more than"),
    "less_than": ("lt", "less than"),
}
_VALIDATOR_PREFIXES = ("Value error, ", "Assertion failed, ")


def issue_at(
    source_map: SourceMap, file: str, loc: Loc, message: str, hint: str = ""
) -> ConfigIssue:
    """An issue located at ``loc`` (or the nearest enclosing key the file has)."""
    line, col = source_map.locate(loc)
    return ConfigIssue(file, line, col, dotted(loc), message, hint)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _keys(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The keys a model accepts: aliases, and field names where the model allows them."""
    by_name = bool(
        model.model_config.get("populate_by_name") or model.model_config.get("validate_by_name")
    )
    keys: dict[str, FieldInfo] = {}
    for name, info in model.model_fields.items():
        if info.alias is None or by_name:
            keys[name] = info
        if info.alias is not None:
            keys[info.alias] = info
    return keys


def _unwrap(annotation: Any) -> Any:
    """``Model | None`` and ``Annotated[Model, ...]`` -> ``Model``; other unions as they are."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else annotation
    return annotation


def _as_model(annotation: Any) -> type[BaseModel] | None:
    annotation = _unwrap(annotation)
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation if is_model else None


def _model_at(model: type[BaseModel] | None, loc: Loc) -> type[BaseModel] | None:
    """The model that owns the last element of ``loc``, walking nested fields and containers."""
    annotation: Any = model
    for part in loc[:-1]:
        annotation = _unwrap(annotation)
        if typing.get_origin(annotation) in (list, dict):  # an index or a mapping key
            args = typing.get_args(annotation)
            annotation = args[-1] if args else None
            continue
        owner = _as_model(annotation)
        info = _keys(owner).get(str(part)) if owner else None
        if info is None:
            return None
        annotation = info.annotation
    return _as_model(annotation)


def _did_you_mean(value: object, allowed: list[str]) -> str:
    guess = suggest(str(value), allowed)
    listed = f"allowed: {', '.join(allowed)}" if allowed else ""
    return (f"did you mean '{guess}'? " if guess else "") + listed


def _unknown_key(model: type[BaseModel] | None, loc: Loc) -> tuple[str, str]:
    owner = _model_at(model, loc)
    allowed = sorted(_keys(owner)) if owner else []
    return f"unknown key '{loc[-1]}'", _did_you_mean(loc[-1], allowed)


def _not_allowed(error: ErrorDetails) -> tuple[str, str]:
    expected = str(error.get("ctx", {}).get("expected", ""))
    options = [o.strip(" '\"") for o in expected.replace(" or ", ",").split(",") if o.strip()]
    return f"{_show(error['input'])} is not an allowed value", _did_you_mean(
        error["input"], options
    )


def _count(error: ErrorDetails, key: str, words: str) -> str:
    need = error.get("ctx", {}).get(key, 1)
    return f"{words} {need} item{'s' if need != 1 else ''}"


def _message(error: ErrorDetails, model: type[BaseModel] | None, loc: Loc) -> tuple[str, str]:
    kind, value = error["type"], error["input"]
    if kind == "extra_forbidden":
        return _unknown_key(model, loc)
    if kind in ("literal_error", "enum"):
        return _not_allowed(error)
    if kind == "missing":
        return "required key missing", ""
    if kind == "invalid_key":
        return f"a key must be a name, got {_show(value)}", f"quote it: '{value}':"
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, got {_show(value)}", ""
    if kind == "too_short" and isinstance(value, list):
        return _count(error, "min_length", "needs at least"), ""
    if kind == "too_long" and isinstance(value, list):
        return _count(error, "max_length", "takes at most"), f"got {len(value)}"
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        return f"must be {words} {error.get('ctx', {}).get(key)}, got {_show(value)}", ""
    if kind in ("value_error", "assertion_error"):
        message = error["msg"]
        for prefix in _VALIDATOR_PREFIXES:
            message = message.removeprefix(prefix)
        return message, ""
    scalar = isinstance(value, str | int | float | bool) or value is None
    return (f"{error['msg']} (got {_show(value)})" if scalar else error["msg"]), ""


def issues_from_validation(
    error: ValidationError,
    source_map: SourceMap,
    file: str,
    prefix: Loc = (),
    model: type[BaseModel] | None = None,
) -> list[ConfigIssue]:
    """One issue per pydantic error, located in the file.

    ``prefix`` is where the validated data sits in the file (``("chunker",)`` when a
    component's settings are validated on their own); ``model`` is the model that was
    validated, used to list the allowed keys of an unknown one.
    """
    issues = []
    for item in error.errors():
        loc = tuple(item["loc"])
        message, hint = _message(item, model, loc)
        issues.append(issue_at(source_map, file, (*prefix, *loc), message, hint))
    return issues
