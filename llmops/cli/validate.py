"""llmops validate"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmops.build import load_config
from llmops.cli.common import console, friendly_errors
from llmops.config import config_kind, load_finetune_config, load_model_app_config


def _check(path: Path) -> str:
    """The app's name, once the file (an app, a model app or a fine-tuning job) is valid."""
    kind = config_kind(path)
    if kind == "model":
        return load_model_app_config(path).app.name
    if kind == "finetune":
        return load_finetune_config(path).job.name
    return load_config(path).loaded.app.name


def validate(
    configs: Annotated[list[Path], typer.Argument(help="One or more app config files.")],
) -> None:
    """Check config files without loading any model: every problem is listed at once.

    Each problem shows file:line:col, the dotted key, what is wrong and how to fix it.
    Exit code 0 when all files are valid, 2 otherwise.

    Example: llmops validate configs/*.yaml
    """
    failed = False
    for path in configs:
        try:
            with friendly_errors():
                name = _check(path)
        except typer.Exit:
            failed = True
            continue
        console.print(f"[green]ok[/green]  {path}  (app '{name}')")
    if failed:
        raise typer.Exit(2)
