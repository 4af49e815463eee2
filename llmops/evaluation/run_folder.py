"""An eval run's folder: ``manifest.json`` (what the run was made with), one
``samples-<variant>.jsonl`` per variant appended as samples finish, and after the run
``summary.json`` and the reports. A crash loses at most the sample being written; a resumed
run reads what is there and answers the rest.
"""

from __future__ import annotations

import datetime
import json
import threading
from pathlib import Path
from typing import Any

from llmops.errors import DatasetError, LLMOpsError
from llmops.evaluation.scoring import SampleResult

MANIFEST = "manifest.json"


def new_run_dir(results_dir: Path, name: str, manifest: dict[str, Any]) -> Path:
    """A fresh ``<results_dir>/<name>-<timestamp>`` folder holding ``manifest``."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    run_dir = results_dir / f"{name}-{stamp}"
    run_dir.mkdir(parents=True)
    (run_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return run_dir


def reopen_run_dir(run_dir: Path, fingerprint: str) -> Path:
    """An unfinished run to resume; refused when it was made with other settings."""
    try:
        found = json.loads((run_dir / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        raise LLMOpsError(f"{run_dir}: not an eval run folder (no readable {MANIFEST})") from None
    if not isinstance(found, dict) or found.get("fingerprint") != fingerprint:
        raise LLMOpsError(
            f"{run_dir}: that run was made with other settings (suite, app config or "
            "dataset changed since); start a new run instead of --resume"
        )
    return run_dir


def read_samples(path: Path) -> dict[str, SampleResult]:
    """The results a run wrote so far; a line cut off by a crash is ignored."""
    done: dict[str, SampleResult] = {}
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            result = SampleResult.from_dict(json.loads(line))
        except (json.JSONDecodeError, TypeError):
            continue
        done[result.id] = result
    return done


class SampleWriter:
    """Appends one JSON line per finished sample, flushed at once (a crash loses at most the
    sample being written)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        if path.exists() and path.stat().st_size:
            with path.open("rb+") as handle:  # end a line a crash cut off, or it joins the next
                handle.seek(-1, 2)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")

    def write(self, result: SampleResult) -> None:
        line = json.dumps(result.as_dict(), ensure_ascii=False) + "\n"
        with self.lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()


def load_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, list[SampleResult]]]:
    """A finished run's summary.json and its per-sample results (for ``eval compare``)."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise DatasetError(
            f"{run_dir}: not a finished eval run (no readable summary.json)"
        ) from None
    samples = {
        name: list(read_samples(run_dir / f"samples-{name}.jsonl").values())
        for name in summary.get("variants", {})
    }
    return summary, samples
