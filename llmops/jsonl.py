"""Reading line-oriented dataset files (JSONL, TSV) lazily, with every error naming the file
and line: eval sets, BEIR folders and fine-tuning data share this one reader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmops.errors import DatasetError


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file, read lazily (corpora can be large)."""
    number = 0
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                yield number, line
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path}:{number + 1}: not UTF-8 text") from None


def json_objects(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``("file:line", object)`` for each non-empty line of a JSONL file; a line that is not a
    JSON object raises ``DatasetError`` naming it."""
    for number, line in text_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: invalid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
        yield where, record
