"""Read YAML keeping the position of every key and item, so errors can point at them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmops.errors import ConfigError, ConfigIssue

Loc = tuple[str | int, ...]


@dataclass
class SourceMap:
    """1-based (line, col) of each path in a YAML document."""

    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def locate(self, loc: Loc) -> tuple[int, int]:
        """Position of ``loc``, or of its longest existing prefix (the root is 1:1)."""
        for end in range(len(loc), 0, -1):
            prefix = tuple(loc[:end])
            if prefix in self.positions:
                return self.positions[prefix]
        return (1, 1)


def _at(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.map = SourceMap()
        self.issues: list[ConfigIssue] = []
        self._constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            result = []
            for index, item in enumerate(node.value):
                self.map.positions[(*loc, index)] = _at(item.start_mark)
                result.append(self.build(item, (*loc, index)))
            return result
        return self._constructor.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = self._constructor.construct_object(key_node, deep=True)
            line, col = _at(key_node.start_mark)
            if key in first_seen:
                self.issues.append(
                    ConfigIssue(
                        self.file,
                        line,
                        col,
                        ".".join(map(str, (*loc, key))),
                        f"duplicate key '{key}' (first defined on line {first_seen[key]})",
                        "remove one of them",
                    )
                )
                continue
            first_seen[key] = line
            self.map.positions[(*loc, key)] = (line, col)
            result[key] = self.build(value_node, (*loc, key))
        return result


def read_yaml(path: Path, file: str | None = None) -> tuple[Any, SourceMap]:
    """Parse a YAML file into plain data plus a SourceMap; raises ConfigError."""
    name = file or str(path)
    if not path.is_file():
        raise ConfigError(
            [
                ConfigIssue(
                    name,
                    1,
                    1,
                    "",
                    "config file not found",
                    f"looked at {path.resolve()}; paths are relative to {Path.cwd()}",
                )
            ]
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = _at(mark) if mark else (1, 1)
        problem = exc.problem or str(exc)
        context = f" ({exc.context})" if exc.context else ""
        raise ConfigError(
            [
                ConfigIssue(
                    name,
                    line,
                    col,
                    "",
                    f"YAML syntax error: {problem}{context}",
                    "check indentation, colons and quotes on this line or the one above",
                )
            ]
        ) from None
    if node is None or not isinstance(node, yaml.MappingNode):
        found = "an empty file" if node is None else "not a mapping"
        raise ConfigError(
            [
                ConfigIssue(
                    name,
                    1,
                    1,
                    "",
                    f"the config must be a YAML mapping of keys, found {found}",
                    "start from configs/quickstart.yaml",
                )
            ]
        )
    builder = _Builder(name)
    data = builder.build(node, ())
    if builder.issues:
        raise ConfigError(builder.issues)
    return data, builder.map
