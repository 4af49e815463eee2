"""Structured files: JSON / JSONL records (field mapping) and CSV / TSV rows (a template)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import LoadError
from llmops.rag.loaders.base import read_text
from llmops.registry import register
from llmops.types import Document


def _field(record: Any, dotted: str) -> Any:
    value = record
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _scalar_metadata(record: Mapping[str, Any], fields: list[str]) -> dict[str, Any]:
    meta = {}
    for name in fields:
        value = _field(record, name)
        if isinstance(value, str | int | float | bool):
            meta[name] = value
    return meta


@register("loader", "json", summary="JSON / JSONL records: text_field, id_field, metadata_fields")
class JsonLoader:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text_field: str = Field("text", description="Field holding the text (dots for nesting).")
        id_field: str | None = Field(None, description="Field with a stable record id.")
        metadata_fields: list[str] = Field(default_factory=list)
        records_path: str | None = Field(None, description="Dotted path to the list in a .json.")

    extensions = (".json", ".jsonl")

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or self.Config()

    def _records(self, path: Path, source: str) -> list[Any]:
        text = read_text(path, source)
        try:
            if path.suffix.lower() == ".jsonl":
                return [json.loads(line) for line in text.splitlines() if line.strip()]
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LoadError(source, f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
        if self.config.records_path:
            data = _field(data, self.config.records_path)
            if data is None:
                raise LoadError(source, f"no '{self.config.records_path}' in the document")
        return data if isinstance(data, list) else [data]

    def load(self, path: Path, source: str) -> list[Document]:
        documents = []
        for number, record in enumerate(self._records(path, source), 1):
            text = _field(record, self.config.text_field)
            if not isinstance(text, str):
                raise LoadError(
                    source, f"record {number} has no text field '{self.config.text_field}'"
                )
            key = _field(record, self.config.id_field) if self.config.id_field else None
            doc_id = f"{source}#{key if key is not None else number}"
            meta = _scalar_metadata(record, self.config.metadata_fields)
            if text.strip():
                documents.append(Document(doc_id, text, source, {"record": number, **meta}))
        return documents


@register("loader", "csv", summary="CSV / TSV rows rendered with a template")
class CsvLoader:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        template: str | None = Field(
            None, description="e.g. '{question}\\n{answer}'; default: 'column: value' lines."
        )
        metadata_fields: list[str] = Field(default_factory=list)
        delimiter: str | None = Field(None, min_length=1, max_length=1)

    extensions = (".csv", ".tsv")

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or self.Config()

    def _render(self, row: dict[str, str], number: int, source: str) -> str:
        if self.config.template is None:
            return "\n".join(f"{k}: {v}" for k, v in row.items() if k and v)
        try:
            return self.config.template.format(**row)
        except KeyError as exc:
            raise LoadError(
                source, f"template names column {exc} missing in row {number}"
            ) from None

    def load(self, path: Path, source: str) -> list[Document]:
        delimiter = self.config.delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
        try:
            rows = list(csv.DictReader(io.StringIO(read_text(path, source)), delimiter=delimiter))
        except csv.Error as exc:
            raise LoadError(source, f"malformed CSV: {exc}") from None
        documents = []
        for number, row in enumerate(rows, 1):
            clean = {k: (v or "") for k, v in row.items() if isinstance(k, str)}
            text = self._render(clean, number, source)
            meta = {"row": number, **_scalar_metadata(clean, self.config.metadata_fields)}
            if text.strip():
                documents.append(Document(f"{source}#row={number}", text, source, meta))
        return documents
