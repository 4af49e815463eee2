"""Structured files: JSON / JSONL records (field mapping) and CSV / TSV rows (a template)."""

from __future__ import annotations

import csv
import io
import json
import string
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmops.errors import LoadError
from llmops.rag.loaders.base import read_text, setting
from llmops.registry import register
from llmops.types import Document

_MISSING = object()


def _field(record: Any, dotted: str) -> Any:
    """``record["a"]["b"]`` for ``"a.b"``; ``_MISSING`` when any step is absent."""
    value = record
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _scalar_metadata(record: Mapping[str, Any], fields: list[str]) -> dict[str, Any]:
    """The listed fields whose values are scalars (Chroma takes nothing else)."""
    meta = {}
    for name in fields:
        value = _field(record, name)
        if isinstance(value, str | int | float | bool):
            meta[name] = value
    return meta


def _parse_json(text: str, jsonl: bool, source: str) -> Any:
    lines = text.splitlines() if jsonl else [text]
    parsed = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError as exc:
            where = number if jsonl else exc.lineno
            raise LoadError(source, f"invalid JSON at line {where}: {exc.msg}") from None
        except RecursionError:
            at = f" at line {number}" if jsonl else ""
            message = f"JSON nested too deeply{at} for the parser (about 1,000 levels)"
            raise LoadError(source, f"{message}: skipped") from None
        except ValueError as exc:
            raise LoadError(source, f"invalid JSON: {exc}") from None
    return parsed if jsonl else (parsed[0] if parsed else _MISSING)


@register("loader", "json", summary="JSON / JSONL records: text_field, id_field, metadata_fields")
class JsonLoader:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text_field: str = Field("text", description="Field holding the text (dots for nesting).")
        id_field: str | None = Field(None, description="Field with a stable, unique record id.")
        metadata_fields: list[str] = Field(default_factory=list)
        records_path: str | None = Field(None, description="Dotted path to the list in a .json.")

    extensions = (".json", ".jsonl")

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or self.Config()

    def _records(self, path: Path, source: str) -> list[Any]:
        data = _parse_json(read_text(path, source), path.suffix.lower() == ".jsonl", source)
        if data is _MISSING:
            raise LoadError(source, "empty JSON file")
        if self.config.records_path:
            data = _field(data, self.config.records_path)
            if data is _MISSING:
                raise LoadError(source, f"no '{self.config.records_path}' in the document")
        if isinstance(data, list):
            return data
        if isinstance(data, Mapping):
            return [data]
        raise LoadError(
            source, f"expected a list of records or an object, got {type(data).__name__}"
        )

    def _key(self, record: Any, number: int, source: str) -> str:
        if self.config.id_field is None:
            return str(number)
        key = _field(record, self.config.id_field)
        if isinstance(key, bool) or not isinstance(key, str | int) or key == "":
            raise LoadError(source, f"record {number} has no id field '{self.config.id_field}'")
        return str(key)

    def load(self, path: Path, source: str) -> list[Document]:
        documents, seen = [], set()
        for number, record in enumerate(self._records(path, source), 1):
            text = _field(record, self.config.text_field)
            if not isinstance(text, str):
                field = self.config.text_field
                raise LoadError(source, f"record {number} has no text field '{field}'")
            key = self._key(record, number, source)
            if key in seen:
                raise LoadError(source, f"record {number} repeats the id '{key}'")
            seen.add(key)
            meta = {"record": number, **_scalar_metadata(record, self.config.metadata_fields)}
            if text.strip():
                documents.append(Document(f"{source}#{key}", text, source, meta))
        return documents


def template_columns(template: str) -> list[str]:
    """The column names a ``str.format`` template uses; ValueError if it is malformed."""
    columns = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is None:
            continue
        column = name.split(".")[0].split("[")[0]
        if not column or column.isdigit():
            raise ValueError(f"use column names in the template, not positions ('{{{name}}}')")
        columns.append(column)
    return columns


_FIELD_LIMIT = threading.Lock()


@contextmanager
def _field_limit(chars: int) -> Iterator[None]:
    """``csv``'s field size limit is one per process: set it for one parse at a time, and
    put the old one back."""
    with _FIELD_LIMIT:
        old = csv.field_size_limit(chars)
        try:
            yield
        finally:
            csv.field_size_limit(old)


@register("loader", "csv", summary="CSV / TSV rows rendered with a template")
class CsvLoader:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        template: str | None = Field(
            None, description="e.g. '{question}\\n{answer}'; default: 'column: value' lines."
        )
        metadata_fields: list[str] = Field(default_factory=list)
        delimiter: str | None = Field(None, min_length=1, max_length=1)
        max_field_chars: int = Field(
            1_000_000, ge=1, description="A file with a longer field is skipped and reported."
        )

        @field_validator("template")
        @classmethod
        def _well_formed(cls, template: str | None) -> str | None:
            if template is not None:
                template_columns(template)
            return template

    extensions = (".csv", ".tsv")

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or self.Config()

    def _rows(self, path: Path, source: str) -> list[dict[str, str]]:
        delimiter = self.config.delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
        text = io.StringIO(read_text(path, source))
        reader = csv.DictReader(text, delimiter=delimiter, strict=True)
        limit = self.config.max_field_chars
        try:
            with _field_limit(limit):
                rows = list(reader)
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                where = setting("csv", path.suffix.lower() or ".csv", "max_field_chars")
                raise LoadError(
                    source,
                    f"a field on line {reader.line_num + 1} is longer than the limit of {limit:,} "
                    f"characters: skipped (raise it: {where})",
                ) from None
            raise LoadError(source, f"malformed CSV: {exc}") from None
        columns = [c for c in reader.fieldnames or [] if c]
        if self.config.template is not None and rows:
            missing = [c for c in template_columns(self.config.template) if c not in columns]
            if missing:
                known = ", ".join(columns)
                raise LoadError(source, f"template names column '{missing[0]}' (have: {known})")
        return [{k: v or "" for k, v in row.items() if isinstance(k, str) and k} for row in rows]

    def _render(self, row: dict[str, str], number: int, source: str) -> str:
        if self.config.template is None:
            return "\n".join(f"{k}: {v}" for k, v in row.items() if v.strip())
        try:
            return self.config.template.format(**row)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise LoadError(source, f"row {number}: template failed ({exc!r})") from None

    def load(self, path: Path, source: str) -> list[Document]:
        documents = []
        for number, row in enumerate(self._rows(path, source), 1):
            text = self._render(row, number, source)
            extra = {name: row[name] for name in self.config.metadata_fields if name in row}
            meta: dict[str, str | int] = {"row": number, **extra}
            if text.strip():
                documents.append(Document(f"{source}#row={number}", text, source, meta))
        return documents
