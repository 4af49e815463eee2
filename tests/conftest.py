"""Shared fixtures: a small corpus and app configs written into a temp dir."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmops.deps import offline_environment

# fixtures shared across test folders: a fresh PostgreSQL database, a Chroma server, the app
pytest_plugins = ["tests.postgres", "tests.chroma_server", "tests.app_client"]

offline_environment()
# pytest-xdist's workers start with COLUMNS=80 and LINES=24, which would fix the CLI console's
# width when it is first imported; without them it follows each CliRunner's environment, as in
# a serial run
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

PAGES = {
    "install.md": """# Installing Widgetron

Widgetron runs on Linux and macOS with Python 3.11 or newer.

## From PyPI

Install the package with pip install widgetron. The wheel bundles the native parser.

## Verifying

Run widgetron --version to print the installed version number.
""",
    "backup.md": """# Backups

Widgetron writes a nightly backup of the catalogue to the archive folder.

## Restoring a backup

To restore, stop the server and run widgetron restore with the archive file name.
Restoring replaces the current catalogue completely.
""",
    "pricing.md": """# Pricing

The community edition is free. The team edition costs 20 euros per seat and month.
Invoices are sent on the first day of each month.
""",
    "notes/colors.txt": "Widgetron paints widgets in teal by default. Set WIDGET_COLOR to change "
    "the paint colour of new widgets.\n",
}


def write_corpus(root: Path, pages: dict[str, str] = PAGES) -> Path:
    for name, text in pages.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "docs")


ConfigWriter = Callable[..., Path]
HASHING = {"type": "hashing"}


@pytest.fixture
def write_config(tmp_path: Path, corpus: Path) -> ConfigWriter:
    """Write an app config next to the corpus; keyword arguments replace top-level sections.

    The default embedder is the real bundled MiniLM; tests of index bookkeeping pass
    ``embedder=HASHING`` to skip the model.
    """

    def write(name: str = "app.yaml", **sections: Any) -> Path:
        data: dict[str, Any] = {
            "name": "testapp",
            "data_dir": "data",
            "sources": [{"path": "docs", "include": ["**/*.md", "**/*.txt"]}],
            "chunker": {"type": "markdown", "chunk_size": 300, "chunk_overlap": 30},
            "embedder": {"type": "sentence_transformers", "model": "bundled"},
        }
        data.update(sections)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write
