"""A walk over an app's OpenAPI document: every input of every operation (path and query
parameters, body fields at any depth) must be bounded, and the fields bounded by the app's
config (``x-llmops-limit``) are listed so that a test can try each one.

Bounded means: a string has ``maxLength`` (or an enum), an integer a ``maximum``, a list
``maxItems``, an object that takes keys of its own ``maxProperties``. Numbers need no bound:
strict bodies refuse NaN and Infinity, and a float is 8 bytes however large. Fields
that are read only as ignored extras (``additionalProperties: true``) are counted, not read.
"""

from __future__ import annotations

from typing import Any

LIMIT = "x-llmops-limit"


class Walk:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.unbounded: list[str] = []
        self.limits: set[tuple[str, str]] = set()

    def schema(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = self.document["components"]["schemas"][node["$ref"].split("/")[-1]]
        return node

    def operation(self, label: str, operation: dict[str, Any]) -> None:
        for parameter in operation.get("parameters", []):
            self.field(label, f"{label} {parameter['in']} {parameter['name']}", parameter["schema"])
        for content in operation.get("requestBody", {}).get("content", {}).values():
            self.field(label, f"{label} body", content["schema"])

    def field(self, label: str, where: str, node: dict[str, Any]) -> None:
        node = self.schema(node)
        if LIMIT in node:
            self.limits.add((label, node[LIMIT]))
        alternatives = node.get("anyOf") or node.get("oneOf") or node.get("allOf")
        if alternatives:
            for alternative in alternatives:
                self.field(label, where, alternative)
            return
        if "enum" in node or "const" in node:
            return
        kind = node.get("type")
        if kind is None:
            self.unbounded.append(f"{where}: any JSON")
        elif kind == "string" and "maxLength" not in node:
            self.unbounded.append(f"{where}: string without maxLength")
        elif kind == "integer" and not {"maximum", "exclusiveMaximum"} & node.keys():
            self.unbounded.append(f"{where}: integer without maximum")
        elif kind == "array":
            if "maxItems" not in node:
                self.unbounded.append(f"{where}: array without maxItems")
            self.field(label, f"{where}[]", node.get("items", {}))
        elif kind == "object":
            self.object(label, where, node)

    def object(self, label: str, where: str, node: dict[str, Any]) -> None:
        for name, child in node.get("properties", {}).items():
            self.field(label, f"{where}.{name}", child)
        extra = node.get("additionalProperties", "properties" not in node)
        if extra is False:
            return
        if "maxProperties" not in node:
            self.unbounded.append(f"{where}: object without maxProperties")
        if isinstance(extra, dict) and extra and LIMIT not in node:
            self.field(label, f"{where}.*", extra)


def walk(document: dict[str, Any]) -> Walk:
    """The walk of every operation of ``document``."""
    result = Walk(document)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            result.operation(f"{method.upper()} {path}", operation)
    return result


def post_operations(document: dict[str, Any]) -> list[str]:
    """The paths of the operations that take a body."""
    return [path for path, ops in document["paths"].items() if "requestBody" in ops.get("post", {})]
