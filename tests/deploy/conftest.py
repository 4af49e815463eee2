"""Configs for rendering: the repo's examples and scale-out-ready variants of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
SHARED = {
    "store": {"type": "chroma", "host": "chroma.data.svc", "port": 8000},
    "monitoring": {"request_log": {"enabled": False}},
}


def rag_configs() -> list[Path]:
    """The RAG app examples (model apps are another kind)."""
    return [p for p in CONFIGS if (yaml.safe_load(p.read_text()) or {}).get("kind") != "model"]


@pytest.fixture
def scalable(tmp_path: Path) -> Any:
    """``scalable(name, **changes)``: an example config with its state in shared services,
    written beside the test (sources kept at their absolute place in the project)."""

    def make(name: str, **changes: Any) -> Path:
        raw = yaml.safe_load((ROOT / "configs" / name).read_text())
        for source in raw["sources"]:
            source["path"] = str((ROOT / "configs" / source["path"]).resolve())
        raw.update(SHARED)
        raw.update(changes)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return make
