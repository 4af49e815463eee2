"""Helpers shared by the benchmark scripts: dataset lookup, temp apps, timing, JSON output."""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

from llmops.deps import offline_environment

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LLMOPS_SHARED", ROOT.parent / "shared")) / "datasets"

offline_environment()


def dataset(name: str) -> Path:
    """The shared dataset folder, or exit cleanly (status 0) with a JSON note if it is absent."""
    path = SHARED / name
    if not path.exists():
        emit({"skipped": f"dataset not found: {path}"})
        sys.exit(0)
    return path


def write_app(folder: Path, source: Path, include: list[str], **sections: Any) -> Path:
    data: dict[str, Any] = {
        "name": "bench",
        "data_dir": str(folder / "data"),
        "sources": [{"path": str(source), "include": include}],
        **sections,
    }
    config = folder / "bench.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform}


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2))
