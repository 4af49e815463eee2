"""llmops drift report · llmops requests export"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import typer

from llmops.cli.common import DEFAULT_CONFIG, console, run
from llmops.config.monitoring import DriftReference
from llmops.errors import InvalidRequest
from llmops.monitoring.monitor import Monitor, log_window
from llmops.monitoring.report import HTML, SUMMARY, write_report
from llmops.monitoring.request_log import RequestLog
from llmops.service import RAG

app = typer.Typer(
    help="Drift between a reference and recent traffic: `drift report` writes an Evidently "
    "HTML report and a JSON summary.",
    no_args_is_help=True,
)
requests_app = typer.Typer(help="The request log: `requests export` to CSV or Parquet.")
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([mhd])")
_UNIT = {"m": 60, "h": 3600, "d": 86400}

ConfigOption = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="App config file.")
SinceOption = typer.Option(
    None, "--since", help="Start: 24h, 7d, 30m ago, or an ISO date/time (UTC when no zone)."
)
UntilOption = typer.Option(None, "--until", help="End, same forms as --since (default: now).")


def parse_time(text: str) -> float:
    """Epoch seconds of '24h' / '7d' / '30m' ago or of an ISO date/time (naive: UTC)."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        return time.time() - float(relative[1]) * _UNIT[relative[2]]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRequest(
            f"'{text}' is not a time: use 24h, 7d, 30m (ago) or an ISO date like 2026-11-01"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parse_reference(text: str) -> DriftReference:
    """A questions file, or a period of the log written 'START..END' (END may be empty)."""
    if ".." in text and not Path(text).exists():
        start, _, end = text.partition("..")
        since = datetime.fromtimestamp(parse_time(start), UTC)
        until = datetime.fromtimestamp(parse_time(end), UTC) if end else None
        return DriftReference(since=since, until=until)
    if not Path(text).is_file():
        raise InvalidRequest(
            f"--reference '{text}' is neither a file of questions nor a period START..END"
        )
    return DriftReference(dataset=str(Path(text).resolve()))


@app.command()
def report(
    config: Path = ConfigOption,
    since: str | None = SinceOption,
    until: str | None = UntilOption,
    reference: str | None = typer.Option(
        None,
        "--reference",
        help="Questions file (JSONL/CSV), or a log period START..END; default: the config's "
        "monitoring.drift.reference.",
    ),
    out: Path = typer.Option(Path("drift-report"), "--out", "-o", help="Output folder."),
) -> None:
    """Compare logged traffic since --since with the reference: drift-report.html (Evidently)
    and drift-summary.json. Exits 3 when drift is detected."""

    def action() -> bool:
        with RAG.from_config(config) as rag:
            monitor = rag.monitor
            chosen = parse_reference(reference) if reference else monitor.config.drift.reference
            if chosen is None:
                raise InvalidRequest(
                    "no reference: pass --reference or set monitoring.drift.reference"
                )
            rows = _log(monitor).rows(
                parse_time(since) if since else None, parse_time(until) if until else None
            )
            current = log_window(rows, monitor.embed)
            drift = monitor.config.drift
            result, summary = write_report(
                monitor.load_reference(chosen),
                current,
                out,
                drift.alpha,
                drift.permutations,
                {"reference": chosen.model_dump(mode="json"), "since": since, "until": until},
            )
        console.print_json(json.dumps(summary["drift"]))
        console.print(f"wrote {out / SUMMARY}" + (f" and {out / HTML}" if summary["html"] else ""))
        return result.detected

    if run(action):
        raise typer.Exit(3)


@requests_app.command("export")
def export(
    out: Path = typer.Argument(..., help="A .csv or .parquet file."),
    config: Path = ConfigOption,
    since: str | None = SinceOption,
    until: str | None = UntilOption,
) -> None:
    """Export the request log (one row per query) to CSV or Parquet."""

    def action() -> int:
        monitor = RAG.from_config(config).monitor
        start, end = (parse_time(t) if t else None for t in (since, until))
        return _log(monitor).export(out, start, end)

    console.print(f"wrote {run(action)} requests to {out}")


def _log(monitor: Monitor) -> RequestLog:
    if monitor.request_log is None:
        raise InvalidRequest("the request log is off (monitoring.request_log.enabled: false)")
    return monitor.request_log
