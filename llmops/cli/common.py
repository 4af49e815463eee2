"""Shared CLI plumbing: config loading with readable errors, consoles, exit codes, progress."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from llmops.errors import ConfigError, LLMOpsError

DEFAULT_CONFIG = Path("configs/quickstart.yaml")
PROGRESS_INTERVAL_ENV = "LLMOPS_PROGRESS_INTERVAL"
DEFAULT_PROGRESS_INTERVAL_S = 10.0

console = Console(soft_wrap=True)  # long lines (a curl command) must stay copy-pasteable
errors = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

ConfigArg = Annotated[Path, typer.Argument(help="App config file (YAML).", show_default=True)]


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Config problems exit 2 with every issue listed; other llmops errors exit 1."""
    try:
        yield
    except ConfigError as exc:
        errors.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(2) from None
    except LLMOpsError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None


def progress_bars() -> Progress:
    """Progress bars on stderr (stdout stays for results): label, bar, done/total, time."""
    columns = (
        TextColumn("[bold]{task.description}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=errors)


def live_terminal() -> bool:
    """True when stderr is a terminal that redraws progress bars in place."""
    return errors.is_terminal and not errors.is_dumb_terminal


def progress_interval() -> float:
    """Seconds between progress lines off a terminal: ``LLMOPS_PROGRESS_INTERVAL`` (default 10);
    a value that is not a positive number exits 2."""
    raw = os.environ.get(PROGRESS_INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_PROGRESS_INTERVAL_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        errors.print(
            f"error: {PROGRESS_INTERVAL_ENV} must be a number of seconds above 0, got '{raw}'",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(2)
    return seconds


class ProgressLines:
    """Progress where bars cannot redraw (a pipe, a file, a CI log), which would otherwise show
    only at the end: ``render()`` printed as one line on stderr every ``interval`` seconds by a
    background thread, and once more on leaving the ``with`` block."""

    def __init__(self, render: Callable[[], str], interval: float) -> None:
        self.render, self.interval = render, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmops-progress", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._print()

    def _print(self) -> None:
        errors.print(self.render(), markup=False, highlight=False)

    def start(self) -> ProgressLines:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and print the last line."""
        self._stop.set()
        self._thread.join()
        self._print()

    def __enter__(self) -> ProgressLines:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


class StageBars:
    """A progress callback ``(stage, done, total)``: one bar per stage, added when the stage
    first reports; ``unit(stage)`` names what the stage counts."""

    def __init__(self, progress: Progress, unit: Callable[[str], str]) -> None:
        self.progress, self.unit = progress, unit
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            label = f"{stage} ({self.unit(stage)})"
            self.tasks[stage] = self.progress.add_task(label, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def run(action: Callable[[], T]) -> T:
    with friendly_errors():
        return action()
