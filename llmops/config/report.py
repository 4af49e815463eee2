"""Turn pydantic validation errors into located, friendly config issues."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from llmops.config.yaml_source import Loc, SourceMap
from llmops.errors import ConfigIssue
from llmops.registry import suggest

_TYPE_NAMES = {
    "int_parsing": "an integer",
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
    "model_attributes_type": "a mapping",
}


def dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


def issue_at(
    source_map: SourceMap, file: str, loc: Loc, message: str, hint: str = ""
) -> ConfigIssue:
    line, col = source_map.locate(loc)
    return ConfigIssue(file, line, col, dotted(loc), message, hint)


def _field_names(model: type[BaseModel]) -> list[str]:
    return sorted(info.alias or name for name, info in model.model_fields.items())


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _model_at(model: type[BaseModel] | None, loc: Loc) -> type[BaseModel] | None:
    """The model that owns the last element of ``loc``, walking nested fields."""
    annotation: Any = model
    for part in loc[:-1]:
        annotation = _strip_optional(annotation)
        if typing.get_origin(annotation) in (list, dict):  # an index or a mapping key
            args = typing.get_args(annotation)
            annotation = args[-1] if args else None
            continue
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        fields = {info.alias or name: info for name, info in annotation.model_fields.items()}
        info = fields.get(str(part))
        if info is None:
            return None
        annotation = info.annotation
    annotation = _strip_optional(annotation)
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _message(error: Any, model: type[BaseModel] | None, loc: Loc) -> tuple[str, str]:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        owner = _model_at(model, loc)
        allowed = _field_names(owner) if owner else []
        guess = suggest(str(loc[-1]), allowed)
        hint = (f"did you mean '{guess}'? " if guess else "") + (
            f"allowed: {', '.join(allowed)}" if allowed else ""
        )
        return f"unknown key '{loc[-1]}'", hint
    if kind == "missing":
        return "required key missing", ""
    if kind in ("literal_error", "enum"):
        expected = error.get("ctx", {}).get("expected", "")
        options = [o.strip(" '\"") for o in expected.replace(" or ", ",").split(",") if o.strip()]
        guess = suggest(str(value), options)
        hint = (f"did you mean '{guess}'? " if guess else "") + f"allowed: {', '.join(options)}"
        return f"'{value}' is not allowed", hint
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, got {value!r}", ""
    if kind == "too_short" and isinstance(value, list):
        need = error.get("ctx", {}).get("min_length", 1)
        return f"needs at least {need} item{'s' if need != 1 else ''}", ""
    bounds = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most"),
              "greater_than": ("gt", "more than"), "less_than": ("lt", "less than")}
    if kind in bounds:
        key, words = bounds[kind]
        return f"must be {words} {error.get('ctx', {}).get(key)}, got {value!r}", ""
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, "), ""
    return f"{error['msg']} (got {value!r})", ""


def issues_from_validation(
    error: ValidationError,
    source_map: SourceMap,
    file: str,
    prefix: Loc = (),
    model: type[BaseModel] | None = None,
) -> list[ConfigIssue]:
    """One issue per pydantic error, located in the file; ``prefix`` roots nested models."""
    issues = []
    for item in error.errors():
        loc = tuple(item["loc"])
        message, hint = _message(item, model, loc)
        issues.append(issue_at(source_map, file, (*prefix, *loc), message, hint))
    return issues
