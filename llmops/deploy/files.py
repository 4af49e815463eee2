"""Rendered files: relative path → text, written to a folder or printed as one stream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmops.config.yaml_source import dump_yaml

Files = dict[str, str]


def to_yaml(*documents: Any, header: str = "") -> str:
    """``documents`` as a YAML stream after ``header`` (``dump_yaml``)."""
    return header + dump_yaml(list(documents))


def write(files: Files, out: Path) -> list[Path]:
    """Write every file under ``out`` (folders made as needed); the paths written."""
    written = []
    for relative, text in sorted(files.items()):
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def as_stream(files: Files) -> str:
    """Every file in one text, each after a ``# file: PATH`` line (for stdout)."""
    return "".join(f"# file: {name}\n{text}" for name, text in sorted(files.items()))
