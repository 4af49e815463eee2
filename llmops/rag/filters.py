"""One filter language for every retrieval path.

A filter is JSON: ``{"field": value}`` (equality), ``{"field": {"op": value}}`` with op one of
eq, ne, in, nin, gt, gte, lt, lte, and ``{"and": [...]}`` / ``{"or": [...]}``. Several keys in
one object are combined with ``and``; ``and``/``or`` nest at most ``MAX_DEPTH`` levels and a
filter holds at most ``MAX_CONDITIONS`` comparisons. ``parse`` validates it once;
``to_chroma`` translates it for Chroma and ``matches`` evaluates it in Python, with the same
meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmops.errors import InvalidRequest
from llmops.types import Chunk

Scalar = str | int | float | bool
COMPARISONS = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte")
LOGICAL = ("and", "or")
MAX_DEPTH = 16
MAX_CONDITIONS = 256


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True)
class Logical:
    op: str
    children: tuple[Filter, ...]


Filter = Condition | Logical


def parse(spec: Mapping[str, Any]) -> Filter:
    """Validate a JSON filter; raises InvalidRequest naming the offending part."""
    return _Parser().filter(spec, 1)


class _Parser:
    """One filter's parse, counting its comparisons against ``MAX_CONDITIONS``."""

    def __init__(self) -> None:
        self.conditions = 0

    def filter(self, spec: Any, depth: int) -> Filter:
        if not isinstance(spec, Mapping) or not spec:
            raise InvalidRequest("a filter must be a non-empty JSON object")
        if depth > MAX_DEPTH:
            raise InvalidRequest(f"the filter nests 'and'/'or' deeper than {MAX_DEPTH} levels")
        parts = [self.entry(str(key), value, depth) for key, value in spec.items()]
        return parts[0] if len(parts) == 1 else Logical("and", tuple(parts))

    def entry(self, key: str, value: Any, depth: int) -> Filter:
        if key in LOGICAL:
            if not isinstance(value, list) or not value:
                raise InvalidRequest(f"filter '{key}' needs a non-empty list of filters")
            return Logical(key, tuple(self.filter(item, depth + 1) for item in value))
        if key.startswith("$") or not key:
            raise InvalidRequest(
                f"unknown filter operator '{key}'; use a field name, 'and' or 'or' "
                f"(comparisons: {', '.join(COMPARISONS)})"
            )
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise InvalidRequest(f"the filter has more than {MAX_CONDITIONS} comparisons")
        if isinstance(value, Mapping):
            if len(value) != 1:
                raise InvalidRequest(
                    f"filter on '{key}' needs exactly one operator, got {len(value)}"
                )
            op, operand = next(iter(value.items()))
            return _condition(key, str(op), operand)
        return _condition(key, "eq", value)


def _condition(field: str, op: str, operand: Any) -> Condition:
    if op not in COMPARISONS:
        raise InvalidRequest(
            f"unknown operator '{op}' on '{field}'; allowed: {', '.join(COMPARISONS)}"
        )
    if op in ("in", "nin"):
        if not isinstance(operand, list) or not operand or not all(map(_is_scalar, operand)):
            raise InvalidRequest(f"'{op}' on '{field}' needs a non-empty list of values")
        if len({type(v) for v in operand}) > 1:
            raise InvalidRequest(f"'{op}' on '{field}' needs values of one type, got {operand!r}")
        return Condition(field, op, tuple(operand))
    if op in ("gt", "gte", "lt", "lte"):
        if isinstance(operand, bool) or not isinstance(operand, int | float):
            raise InvalidRequest(f"'{op}' on '{field}' needs a number, got {operand!r}")
    elif not _is_scalar(operand):
        raise InvalidRequest(f"'{op}' on '{field}' needs a string, number or boolean")
    return Condition(field, op, operand)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def to_chroma(node: Filter) -> dict[str, Any]:
    """The equivalent Chroma ``where`` clause."""
    if isinstance(node, Logical):
        children = [to_chroma(c) for c in node.children]
        return children[0] if len(children) == 1 else {f"${node.op}": children}
    value = list(node.value) if isinstance(node.value, tuple) else node.value
    return {node.field: {f"${node.op}": value}}


def chunk_metadata(chunk: Chunk) -> dict[str, Any]:
    """The fields a filter sees for a chunk, on every path: its metadata plus ``document_id``,
    ``source`` and ``index`` (what the vector store stores beside the vector)."""
    meta: dict[str, Any] = dict(chunk.metadata)
    meta.update(document_id=chunk.document_id, source=chunk.source, index=chunk.index)
    return meta


def matches(node: Filter, metadata: Mapping[str, Any]) -> bool:
    """Evaluate the filter on one chunk's metadata exactly as Chroma does: a missing field
    matches only ``ne`` and ``nin``, and a boolean never equals a number."""
    if isinstance(node, Logical):
        results = (matches(c, metadata) for c in node.children)
        return all(results) if node.op == "and" else any(results)
    if node.field not in metadata:
        return node.op in ("ne", "nin")
    return _compare(node.op, metadata[node.field], node.value)


def _equal(actual: Any, expected: Any) -> bool:
    """Python's ``True == 1`` does not hold in Chroma: booleans and numbers never compare equal."""
    return isinstance(actual, bool) == isinstance(expected, bool) and bool(actual == expected)


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op in ("eq", "ne"):
        return _equal(actual, expected) == (op == "eq")
    if op in ("in", "nin"):
        return any(_equal(actual, v) for v in expected) == (op == "in")
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        return False
    return {"gt": actual > expected, "gte": actual >= expected, "lt": actual < expected}.get(
        op, actual <= expected
    )
