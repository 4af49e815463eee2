"""The eval runs of one folder (the suites' ``results_dir``, the app's ``evaluation.runs_dir``)
read back, for the app's ``/evals`` routes and the console: the runs with their gates and
headline metrics, one run in full, and two runs compared sample by sample with the paired
statistics of ``llmops eval compare`` (``compare_runs``, shared with that command).

    runs = EvalRuns(Path(".llmops/eval"))
    runs.listing()["runs"][0]["gates"], runs.compare(older, newer)["metrics"]["token_f1"]

A run is named by its folder's name. A name that is not one plain folder name, or whose folder
leads out of the runs folder through a link, is refused (``InvalidRequest``); a name with no
run, or a run not finished yet, is ``NotFound``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from llmops.confine import Escape, inside, join_inside
from llmops.errors import InvalidRequest, NotFound
from llmops.evaluation.run_folder import MANIFEST, load_run
from llmops.evaluation.stats import Comparison
from llmops.evaluation.suite import BASELINE, OPERATIONAL
from llmops.evaluation.summary import compare_results

RUN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
"""A run's name: its folder's name (``<suite>-<date>-<time>``), no path."""
SUMMARY = "summary.json"
REPORT = "report.html"
SHOWN_PARAMS = ("dataset", "config_hash", "suite_hash", "app_fingerprint", "judge")
"""What of a run's params the detail shows (not the absolute paths of the machine)."""


def compare_runs(run_a: Path, run_b: Path, variant: str = BASELINE) -> dict[str, Comparison]:
    """B − A for every metric of ``variant`` on the samples both runs answered: the mean
    difference, its 95% bootstrap CI and a paired permutation p-value."""
    summary_a, samples_a = load_run(run_a)
    _, samples_b = load_run(run_b)
    for folder, samples in ((run_a, samples_a), (run_b, samples_b)):
        if variant not in samples:
            raise InvalidRequest(
                f"run {folder.name}: no variant '{variant}'; it has: {', '.join(samples) or 'none'}"
            )
    metrics = [m for m in summary_a["variants"][variant]["metrics"] if m not in OPERATIONAL]
    return compare_results(samples_a[variant], samples_b[variant], metrics)


class EvalRuns:
    """The runs in ``folder``; messages name the folder as ``shown`` (the config's value)."""

    def __init__(self, folder: Path, shown: str | None = None) -> None:
        self.folder = folder
        self.shown = shown or str(folder)

    def listing(self, limit: int = 100) -> dict[str, Any]:
        """The newest ``limit`` runs, newest first; unfinished ones (running or interrupted)
        are listed with ``finished: false`` and no figures."""
        if not self.folder.is_dir():
            return {"folder": self.shown, "exists": False, "count": 0, "runs": []}
        runs = [
            _entry(path)
            for path in self.folder.iterdir()
            if (path / MANIFEST).is_file() and _confined(self.folder, path.name)
        ]
        runs.sort(key=lambda run: (run["started"], run["run"]), reverse=True)
        return {"folder": self.shown, "exists": True, "count": len(runs), "runs": runs[:limit]}

    def run(self, name: str) -> dict[str, Any]:
        """One finished run: per variant its metrics (mean, 95% CI, n), run figures and gates
        (threshold, value, verdict); each variant against the baseline. ``scored``: the
        metrics that are scores (not latency, tokens or cost)."""
        folder = self.folder_of(name)
        summary = self._finished(folder)
        gates = _gate_results(summary)
        variants = {
            variant: {
                "metrics": figures.get("metrics", {}),
                "run": figures.get("run", {}),
                "gates": gates.get(variant, []),
            }
            for variant, figures in summary.get("variants", {}).items()
        }
        params = summary.get("params", {})
        produced = [m for figures in variants.values() for m in figures["metrics"]]
        return {
            **_head(folder, summary),
            "scored": [m for m in dict.fromkeys(produced) if m not in OPERATIONAL],
            "variants": variants,
            "comparisons": summary.get("comparisons", {}),
            "params": {key: params[key] for key in SHOWN_PARAMS if key in params},
            "report": (folder / REPORT).is_file(),
        }

    def compare(self, base: str, head: str, variant: str = BASELINE) -> dict[str, Any]:
        """``head`` against ``base`` (B − A), metric by metric, for one variant of each."""
        run_a, run_b = self.folder_of(base), self.folder_of(head)
        for folder in (run_a, run_b):
            self._finished(folder)
        comparisons = compare_runs(run_a, run_b, variant)
        return {
            "base": base,
            "head": head,
            "variant": variant,
            "scored": [m for m in comparisons if m not in OPERATIONAL],
            "metrics": {metric: c.as_dict() for metric, c in comparisons.items()},
        }

    def report(self, name: str) -> Path:
        """The run's HTML report (a link out of the run's folder is no report)."""
        folder = self.folder_of(name)
        path = folder / REPORT
        if not path.is_file() or not inside(folder, path):
            raise NotFound(f"run '{name}' has no {REPORT} (it is written when a run finishes)")
        return path

    def folder_of(self, name: str) -> Path:
        """The folder of run ``name``, inside the runs folder."""
        if not re.fullmatch(RUN_PATTERN, name):
            raise InvalidRequest(
                f"'{name[:80]}' is not a run name: a run is named by its folder, letters, "
                "digits, '_', '.' and '-' (GET /evals lists them)"
            )
        try:
            folder = join_inside(self.folder, name)
        except Escape:
            raise InvalidRequest(
                f"run '{name}' is a symbolic link out of {self.shown}: refused"
            ) from None
        if not (folder / MANIFEST).is_file():
            raise NotFound(
                f"no eval run '{name}' in {self.shown} (the app's evaluation.runs_dir); "
                "GET /evals lists the runs there"
            )
        return folder

    def _finished(self, folder: Path) -> dict[str, Any]:
        summary = _summary(folder)
        if summary is None:
            raise NotFound(
                f"run '{folder.name}' is not finished (no readable {SUMMARY}): it is still "
                "running, or it was interrupted: finish it with `llmops eval run SUITE "
                f"--resume {self.shown}/{folder.name}`"
            )
        return summary


def _confined(folder: Path, name: str) -> bool:
    try:
        join_inside(folder, name)
    except Escape:
        return False
    return True


def _summary(folder: Path) -> dict[str, Any] | None:
    """The run's summary.json; None while it is missing or unreadable."""
    try:
        summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return summary if isinstance(summary, dict) else None


def _head(folder: Path, summary: dict[str, Any] | None) -> dict[str, Any]:
    """Name, suite, start time (epoch seconds) and state of a run."""
    manifest = folder / MANIFEST
    try:
        suite = json.loads(manifest.read_text(encoding="utf-8")).get("suite")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        suite = None
    head = {"run": folder.name, "suite": suite, "started": manifest.stat().st_mtime}
    if summary is None:
        return {**head, "finished": False, "passed": None}
    head["suite"] = summary.get("suite", suite)
    return {**head, "finished": True, "passed": summary.get("passed")}


def _entry(folder: Path) -> dict[str, Any]:
    """A run as the list shows it: the baseline's metric means and the gates' tally."""
    summary = _summary(folder)
    head = _head(folder, summary)
    if summary is None:
        return {**head, "variants": [], "metrics": {}, "gates": None}
    variants = summary.get("variants", {})
    baseline = variants.get(BASELINE, {}).get("metrics", {})
    verdicts = [g["passed"] for gates in _gate_results(summary).values() for g in gates]
    return {
        **head,
        "variants": list(variants),
        "metrics": {m: s["mean"] for m, s in baseline.items() if m not in OPERATIONAL},
        "p95_latency_ms": variants.get(BASELINE, {}).get("run", {}).get("p95_latency_ms"),
        "gates": {"passed": sum(verdicts), "failed": len(verdicts) - sum(verdicts)},
    }


def _gate_results(summary: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each variant's gates with their parts and verdicts. A run written before summaries kept
    ``gate_results`` has only the gates' lines ("PASS  hit@4 >= 0.8  (got 0.9)")."""
    if "gate_results" in summary:
        results: dict[str, list[dict[str, Any]]] = summary["gate_results"]
        return results
    return {
        variant: [{"gate": line, "passed": line.startswith("PASS")} for line in lines]
        for variant, lines in summary.get("gates", {}).items()
    }
