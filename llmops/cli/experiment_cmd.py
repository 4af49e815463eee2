"""llmops experiment show · llmops experiment shadow: the app's experiment, read from its
state store (the server need not run)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.table import Table

from llmops.build import load_config
from llmops.cli.common import DEFAULT_CONFIG, console, run
from llmops.config import resolve_path
from llmops.errors import InvalidRequest
from llmops.pipelines.experiment import open_state
from llmops.routing.router import ExperimentRouter

T = TypeVar("T")
app = typer.Typer(
    help="The app's experiment (its `experiment:` section): `experiment show` for traffic, "
    "rewards, the canary's ramp and the shadow's agreement; `experiment shadow` for recent "
    "shadow runs. Both read the experiment's state (SQLite in the data dir, or its Redis).",
    no_args_is_help=True,
)
ConfigOption = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="App config file.")
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _with_router(config: Path, read: Callable[[ExperimentRouter], Awaitable[T]]) -> T:
    spec = load_config(config)
    app_config = spec.loaded.app
    experiment = app_config.experiment
    if experiment is None:
        raise InvalidRequest(f"{config} runs no experiment (no `experiment:` section)")

    async def go() -> T:
        data_dir = resolve_path(spec.base_dir, app_config.data_dir)
        router = ExperimentRouter(experiment, open_state(experiment, data_dir), app_config.name)
        try:
            return await read(router)
        finally:
            await router.state.close()

    return asyncio.run(go())


@app.command()
def show(config: Path = ConfigOption, as_json: bool = JsonOption) -> None:
    """Per variant: requests, share, rewards, the posterior of the mean reward; the canary's
    stage and the reason for its last move; the shadow's agreement."""
    report = run(lambda: _with_router(config, lambda router: router.report()))
    if as_json:
        console.print_json(json.dumps(report))
        return
    table = Table(
        "variant", "requests", "share", "rewards", "mean reward", "posterior [95%]",
        title=f"experiment {report['experiment']} ({report['strategy']})",
    )  # fmt: skip
    notes = []
    for name, v in report["variants"].items():
        interval = v["posterior_interval"]
        table.add_row(
            name,
            str(v["requests"]),
            f"{v['share']:.1%}",
            str(v["rewards"]),
            _number(v["mean_reward"]),
            f"{_number(v['posterior_mean'])} [{interval[0]:.3f}, {interval[1]:.3f}]"
            if interval
            else "-",
        )
        notes += _canary_lines(name, v.get("canary")) + _shadow_lines(name, v.get("shadow"))
    console.print(table)
    for line in notes:
        console.print(line, markup=False)


@app.command()
def shadow(
    config: Path = ConfigOption,
    limit: int = typer.Option(5, "--limit", "-n", min=1, help="How many runs, newest first."),
    as_json: bool = JsonOption,
) -> None:
    """The newest shadow runs: the question, both answers, agreement and latencies."""

    runs = run(lambda: _with_router(config, lambda router: router.shadow_runs(limit)))
    if as_json:
        console.print_json(json.dumps(runs))
        return
    for r in runs:
        outcome = f"error: {r['error']}" if r["error"] else f"agreement {r['agreement']:.2f}"
        console.print(f"[bold]{r['question']}[/bold]  ({outcome})")
        console.print(f"  {r['serving']} ({r['serving_ms']:.0f} ms): {r['serving_answer']}")
        if r["shadow_answer"] is not None:
            console.print(f"  {r['shadow']} ({r['shadow_ms']:.0f} ms): {r['shadow_answer']}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _canary_lines(name: str, canary: dict[str, Any] | None) -> list[str]:
    if canary is None:
        return []
    stage = f"canary {name}: stage {canary['stage']}/{len(canary['stages'])}"
    window = canary["window"]
    if canary["rolled_back"]:
        now = f"{stage}, rolled back"
    elif canary["share"] >= 1.0:
        now = f"{stage}, ramp complete (all users)"
    else:
        now = (
            f"{stage}, {canary['share']:.0%} of users; window {window['requests']}/"
            f"{window['size']} requests, {window['errors']} errors"
        )
    return [now, f"  last move: {canary['reason']}"]


def _shadow_lines(name: str, shadow: dict[str, Any] | None) -> list[str]:
    if shadow is None or not shadow["runs"]:
        return [] if shadow is None else [f"shadow {name}: no runs yet"]
    return [
        f"shadow {name}: {shadow['runs']} runs, {shadow['errors']} errors, mean agreement "
        f"{_number(shadow['mean_agreement'])}, passage overlap "
        f"{_number(shadow['mean_source_overlap'])}, p50 {shadow['serving_p50_ms']} ms served / "
        f"{shadow['shadow_p50_ms']} ms shadow"
    ]
