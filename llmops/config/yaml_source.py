"""Read YAML keeping the position of every key and item, so errors can point at them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmops.errors import ConfigError, ConfigIssue

Loc = tuple[str | int, ...]
# Far above any real config, far below what hurts: without a limit a few hundred bytes of
# nested aliases ("billion laughs") expand to billions of values.
MAX_NODES = 100_000
# Configs hold settings, not data; the size is checked before anything is read or parsed.
MAX_BYTES = 10_000_000
# PyYAML composes (and this module builds) nested values recursively; deeper nesting than
# this is refused with a clear error rather than Python's RecursionError.
MAX_DEPTH = 64
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class SourceMap:
    """1-based (line, col) of each path in a YAML document; a mapping key's own position."""

    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def locate(self, loc: Loc) -> tuple[int, int]:
        """Position of ``loc``, or of its longest existing prefix (the root is 1:1)."""
        for end in range(len(loc), 0, -1):
            prefix = tuple(loc[:end])
            if prefix in self.positions:
                return self.positions[prefix]
        return (1, 1)


def dotted(loc: Loc) -> str:
    """``("sources", 0, "path")`` -> ``"sources.0.path"``."""
    return ".".join(str(part) for part in loc)


def _at(mark: yaml.Mark) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


class _Builder:
    """Turns a composed node tree into plain data, recording positions and problems."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.map = SourceMap()
        self.issues: list[ConfigIssue] = []
        self._constructor = yaml.SafeLoader("")
        self._open: set[int] = set()  # collection nodes being built, to catch recursive aliases

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, loc)
        if id(node) in self._open:
            self._issue(node.start_mark, loc, "an alias refers to a node that contains it")
            return None
        if node.tag not in (_MAP_TAG, _SEQ_TAG):
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            self._issue(node.start_mark, loc, f"unsupported YAML tag '{tag}'", "remove the tag")
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc)
            return self._sequence(node, loc)
        finally:
            self._open.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self._issue(node.start_mark, loc, f"cannot read this value: {problem}")
            return None

    def _sequence(self, node: yaml.Node, loc: Loc) -> list[Any]:
        result = []
        for index, item in enumerate(node.value):
            self.map.positions[(*loc, index)] = _at(item.start_mark)
            result.append(self.build(item, (*loc, index)))
        return result

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for source in reversed(list(self._merge_sources(node, loc))):
            merged = self.build(source, loc)  # earlier sources win, explicit keys win over all
            result.update(merged if isinstance(merged, dict) else {})
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, loc)
            if key is None:
                continue
            line, col = _at(key_node.start_mark)
            if key in first_line:
                self._duplicate(key_node.start_mark, (*loc, key), first_line[key])
            first_line.setdefault(key, line)
            self.map.positions[(*loc, key)] = (line, col)
            result[key] = self.build(value_node, (*loc, key))  # the last one wins, as in PyYAML
        return result

    def _merge_sources(self, node: yaml.MappingNode, loc: Loc) -> Iterator[yaml.MappingNode]:
        """The mappings that ``<<: *anchor`` (or ``<<: [*a, *b]``) merges into ``node``."""
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                continue
            items = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for item in items:
                if isinstance(item, yaml.MappingNode):
                    yield item
                else:
                    self._issue(item.start_mark, loc, "'<<' merges only mappings")

    def _key(self, node: yaml.Node, loc: Loc) -> str | int | None:
        key = self.build(node, loc) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(key, str | int) and not isinstance(key, bool):
            return key
        self._issue(node.start_mark, loc, "a key must be a plain name or number")
        return None

    def _duplicate(self, mark: yaml.Mark, loc: Loc, first_line: int) -> None:
        message = f"duplicate key '{loc[-1]}' (first defined on line {first_line})"
        self._issue(mark, loc, message, "remove one of them")

    def _issue(self, mark: yaml.Mark, loc: Loc, message: str, hint: str = "") -> None:
        line, col = _at(mark)
        self.issues.append(ConfigIssue(self.file, line, col, dotted(loc), message, hint))


class _Sizer:
    """Counts the nodes building each node would produce, without building it.

    Each node is counted once (memoised), so aliases cost nothing to count however often
    they repeat. The first node whose expansion passes ``MAX_NODES`` is reported where it is
    written. A recursive alias counts as one node; the builder reports it.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self._sizes: dict[int, int] = {}

    def size(self, node: yaml.Node, loc: Loc, depth: int = 0) -> int:
        if id(node) in self._sizes:
            return self._sizes[id(node)]
        if depth > MAX_DEPTH:
            raise _too_deep(self.file, _at(node.start_mark))
        self._sizes[id(node)] = 1  # stands while the node is open: a recursive alias adds 1
        total = 1 + sum(
            self.size(child, child_loc, depth + 1) for child, child_loc in _children(node, loc)
        )
        if total > MAX_NODES:
            raise self._too_large(node, loc, total)
        self._sizes[id(node)] = total
        return total

    def _too_large(self, node: yaml.Node, loc: Loc, total: int) -> ConfigError:
        line, col = _at(node.start_mark)
        message = (
            f"this value has {total:,} YAML nodes once aliases are expanded; "
            f"at most {MAX_NODES:,} are allowed"
        )
        hint = (
            "aliases (*name) repeat what they point to: nest fewer of them, or write the values out"
        )
        return ConfigError([ConfigIssue(self.file, line, col, dotted(loc), message, hint)])


def _children(node: yaml.Node, loc: Loc) -> Iterator[tuple[yaml.Node, Loc]]:
    """A collection's keys and values (or items), each with the path it is built at."""
    if isinstance(node, yaml.SequenceNode):
        yield from ((item, (*loc, i)) for i, item in enumerate(node.value))
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            yield key_node, loc
            named = isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG
            yield value_node, (*loc, key_node.value) if named else loc


def _fail(file: str, message: str, hint: str, at: tuple[int, int] = (1, 1)) -> ConfigError:
    return ConfigError([ConfigIssue(file, at[0], at[1], "", message, hint)])


def _too_deep(file: str, at: tuple[int, int] = (1, 1)) -> ConfigError:
    message = f"values are nested more than {MAX_DEPTH} levels deep: refused"
    return _fail(file, message, "a config nests a few levels; flatten this value", at)


def _too_big(file: str, size: int) -> ConfigError:
    message = f"the file is {size / 1e6:,.1f} MB; a config may be at most {MAX_BYTES / 1e6:g} MB"
    hint = "configs hold settings, not data: put the data in a file the config points at"
    return _fail(file, message, hint)


def _read_bytes(path: Path, file: str) -> bytes:
    """The file's bytes; at most ``MAX_BYTES`` are ever read (the size is checked first, and
    the read is bounded should the file grow meanwhile)."""
    if not path.is_file():
        hint = f"looked at {path.resolve()}; relative paths start from {Path.cwd()}"
        raise _fail(file, "config file not found", hint)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise _too_big(file, size)
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise _fail(file, f"cannot read the config file: {exc.strerror}", str(path)) from None
    if len(data) > MAX_BYTES:
        raise _too_big(file, len(data))
    return data


def _read_text(path: Path, file: str) -> str:
    try:
        return _read_bytes(path, file).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(file, f"not UTF-8 text (byte {exc.start})", "save it as UTF-8") from None


def _check_depth(text: str, file: str) -> None:
    """ConfigError at the first value nested over ``MAX_DEPTH``: PyYAML's event parser is not
    recursive (its composer is), so this stops a deep file before composing it."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise _too_deep(file, (mark.line + 1, mark.column + 1) if mark else (1, 1))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _compose(text: str, file: str) -> yaml.MappingNode:
    try:
        _check_depth(text, file)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:  # the depth check comes first; this is a second line of defence
        raise _too_deep(file) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = f" ({exc.context})" if exc.context else ""
        raise _fail(
            file,
            f"YAML syntax error: {exc.problem or exc}{context}",
            "check indentation, colons and quotes on this line or the one above",
            _at(mark) if mark else (1, 1),
        ) from None
    if not isinstance(node, yaml.MappingNode):
        found = "an empty file" if node is None else "not a mapping"
        raise _fail(
            file,
            f"the config must be a YAML mapping of keys, found {found}",
            "start from configs/quickstart.yaml",
        )
    return node


def load_yaml(
    path: Path, file: str | None = None
) -> tuple[dict[Any, Any], SourceMap, list[ConfigIssue]]:
    """Parse a YAML mapping into plain data, a SourceMap and the problems found on the way.

    Raises ConfigError only when nothing usable was read (no file, over ``MAX_BYTES``, bad
    syntax, not a mapping, nested over ``MAX_DEPTH``, more than ``MAX_NODES`` once aliases
    are expanded);
    duplicate keys, bad tags and unreadable values are returned so that later checks still run.
    """
    name = file or str(path)
    node = _compose(_read_text(path, name), name)
    _Sizer(name).size(node, ())
    builder = _Builder(name)
    data = builder.build(node, ())
    return data, builder.map, builder.issues


def read_yaml(path: Path, file: str | None = None) -> tuple[Any, SourceMap]:
    """Parse a YAML file into plain data plus a SourceMap; raises ConfigError on any problem."""
    data, source_map, issues = load_yaml(path, file)
    if issues:
        raise ConfigError(issues)
    return data, source_map


def dump_yaml(documents: list[Any], explicit_start: bool = False) -> str:
    """``documents`` as one YAML stream (``---`` between them, and before the first with
    ``explicit_start``), keys in their order; multi-line strings as literal blocks, so an
    embedded config reads as it was written; an object used twice is written out twice, never
    as an anchor and alias (manifests are read by tools that may not follow them)."""

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump_all(
        documents, Dumper=Dumper, sort_keys=False, explicit_start=explicit_start, width=100
    )
