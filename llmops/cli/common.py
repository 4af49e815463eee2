"""Shared CLI plumbing: config loading with readable errors, consoles, exit codes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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
