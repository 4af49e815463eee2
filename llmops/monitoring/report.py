"""The drift report: Evidently's data-drift preset over the numeric signals and a 2-D
projection of the question embeddings, saved as HTML, with our own tests (KS, PSI, MMD) and
Evidently's verdicts in a JSON summary."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from llmops.deps import require
from llmops.monitoring.drift import DriftResult, Window, compare

HTML = "drift-report.html"
SUMMARY = "drift-summary.json"
PROJECTION = ("embedding_pc1", "embedding_pc2")


def columns(reference: Window, current: Window) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reference and current values per report column: the numeric signals both windows
    have (and that vary), plus the embeddings projected on the reference's top two
    principal components."""
    out = {}
    for name, values in current.signals.items():
        ref = reference.signals.get(name)
        if ref is not None and len(ref) and len(values) and np.ptp(np.r_[ref, values]) > 0:
            out[name] = (np.asarray(ref, np.float64), np.asarray(values, np.float64))
    if reference.embeddings is not None and current.embeddings is not None:
        center = reference.embeddings.mean(axis=0)
        axes = np.linalg.svd(reference.embeddings - center, full_matrices=False)[2][:2]
        ref_proj = (reference.embeddings - center) @ axes.T
        cur_proj = (current.embeddings - center) @ axes.T
        for i, name in enumerate(PROJECTION[: axes.shape[0]]):
            out[name] = (ref_proj[:, i], cur_proj[:, i])
    return out


def evidently_report(data: dict[str, tuple[np.ndarray, np.ndarray]], html: Path) -> dict[str, Any]:
    """Run the preset over numeric columns, save the HTML, return Evidently's verdicts per
    column."""
    pd = require("pandas", extra="monitor")
    reference = pd.DataFrame({name: ref for name, (ref, _) in data.items()})
    current = pd.DataFrame({name: cur for name, (_, cur) in data.items()})
    return table_report(reference, current, list(data), [], html)


def table_report(
    reference: Any, current: Any, numeric: list[str], categorical: list[str], html: Path
) -> dict[str, Any]:
    """Evidently's data-drift preset on two DataFrames' ``numeric`` and ``categorical``
    columns: the HTML saved to ``html``, its verdicts returned."""
    evidently = require("evidently", extra="monitor")
    presets = require("evidently.presets", extra="monitor")
    definition = evidently.DataDefinition(
        numerical_columns=numeric, categorical_columns=categorical
    )
    snapshot = evidently.Report([presets.DataDriftPreset()]).run(
        current_data=evidently.Dataset.from_pandas(current, data_definition=definition),
        reference_data=evidently.Dataset.from_pandas(reference, data_definition=definition),
    )
    snapshot.save_html(str(html))
    summary: dict[str, Any] = {"columns": {}}
    for metric in snapshot.dict()["metrics"]:
        config, value = metric["config"], metric["value"]
        if config["type"].endswith("DriftedColumnsCount"):
            summary["drifted_columns"] = {"count": int(value["count"]), "share": value["share"]}
        elif config["type"].endswith("ValueDrift"):
            summary["columns"][config["column"]] = {
                "method": config["method"],
                "value": value,
                "threshold": config["threshold"],
            }
    return summary


def write_report(
    reference: Window,
    current: Window,
    out_dir: Path,
    alpha: float = 0.01,
    permutations: int = 500,
    about: dict[str, Any] | None = None,
) -> tuple[DriftResult, dict[str, Any]]:
    """Write ``drift-report.html`` and ``drift-summary.json`` into ``out_dir``."""
    if current.size < 2 or reference.size < 2:
        raise ValueError(
            f"a drift report needs at least 2 queries on each side; the reference has "
            f"{reference.size} and the current window {current.size}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    result = compare(reference, current, alpha, permutations)
    data = columns(reference, current)
    summary = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(about or {}),
        "drift": result.to_dict(),
        "evidently": evidently_report(data, out_dir / HTML) if data else None,
        "html": HTML if data else None,
    }
    (out_dir / SUMMARY).write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return result, summary
