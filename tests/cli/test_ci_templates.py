"""The GitHub Actions templates in deploy/ call only real commands: every `llmops ...` line in
their `run:` scripts is parsed by the CLI itself (unknown commands or options, missing
arguments fail), each subcommand's --help runs, and the config files they name exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from llmops.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "deploy").glob("ci-*.yml"))
# the word `llmops` (not part of a path such as .llmops/adult; after `nohup` or `$(` too) up
# to the end of that command: a pipe, a redirection, a background &, a `;` or a closing `)`
COMMAND = re.compile(r"(?<![\w./-])llmops\s+([^|;&>)\n]*)")
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def _scripts(workflow: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """Each step's `run:` script with the environment it sees (workflow, job, step)."""
    found = []
    for job in workflow["jobs"].values():
        for step in job.get("steps", []):
            if "run" in step:
                env = {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})}
                found.append((step["run"], {k: str(v) for k, v in env.items()}))
    return found


def _commands(template: Path) -> list[list[str]]:
    workflow = yaml.safe_load(template.read_text())
    commands = []
    for script, env in _scripts(workflow):
        joined = script.replace("\\\n", " ")  # continued lines are one command
        commands += [shlex.split(_expand(m.group(1), env)) for m in COMMAND.finditer(joined)]
    return commands


def _expand(text: str, env: dict[str, str]) -> str:
    """``$NAME`` / ``${NAME}`` from the workflow's env; others (set by the script) stay."""
    return VARIABLE.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def _leaf(args: list[str]) -> tuple[list[str], Any, list[str]]:
    """The subcommand path (["models", "promote"]), its (click) command and its own args."""
    command = typer.main.get_command(app)
    path: list[str] = []
    rest = list(args)
    while hasattr(command, "commands"):  # a group (typer vendors its own click: no isinstance)
        assert rest, f"`llmops {' '.join(path)}` needs a subcommand"
        name, rest = rest[0], rest[1:]
        found = command.commands.get(name)
        assert found is not None, f"`llmops {' '.join([*path, name])}`: no such command"
        command, path = found, [*path, name]
    return path, command, rest


def _parse_error(command: Any, path: list[str], rest: list[str]) -> str | None:
    """What the CLI's own argument parser says of these args (None: they parse)."""
    try:
        command.make_context(" ".join(["llmops", *path]), list(rest))
    except Exception as exc:  # click's UsageError family, from typer's vendored click
        message = getattr(exc, "format_message", None)
        return str(message() if message else exc)
    return None


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_every_llmops_command_in_a_ci_template_is_a_real_command(template: Path) -> None:
    commands = _commands(template)
    assert commands, f"{template.name} calls no llmops command"
    runner = CliRunner()
    for args in commands:
        path, command, rest = _leaf(args)
        shown = runner.invoke(app, [*path, "--help"])
        assert shown.exit_code == 0, (args, shown.output)
        error = _parse_error(command, path, rest)
        assert error is None, f"{template.name}: `llmops {' '.join(args)}`: {error}"
        for arg in rest:
            if arg.endswith((".yaml", ".yml")):
                assert (ROOT / arg).is_file(), f"{template.name} names a missing file {arg}"


def test_the_train_template_has_the_model_pipeline_in_order() -> None:
    template = ROOT / "deploy" / "ci-train.yml"
    used = [" ".join(_leaf(args)[0]) for args in _commands(template)]
    assert used == ["validate", "train", "models show", "models promote", "up", "models promote"]
    workflow = yaml.safe_load(template.read_text())
    jobs = workflow["jobs"]
    assert jobs["staging"]["needs"] == "train"
    promote = jobs["promote"]
    assert promote["environment"] == "production" and "refs/heads/main" in promote["if"]
    assert set(promote["needs"]) == {"train", "staging"}
    uploads = [s for s in jobs["train"]["steps"] if "upload-artifact" in s.get("uses", "")]
    assert any("reports" in s["with"]["path"] for s in uploads)
    smoke = " ".join(s.get("run", "") for s in jobs["staging"]["steps"])
    assert "curl" in smoke and "/predict/$MODEL" in smoke


def test_a_made_up_option_in_a_template_is_caught(tmp_path: Path) -> None:
    bad = tmp_path / "ci-bad.yml"
    bad.write_text(
        "env: {CONFIG: configs/adult.yaml}\n"
        "jobs: {train: {steps: [{run: 'llmops train \"$CONFIG\" --epochs 3'}]}}\n"
    )
    (args,) = _commands(bad)
    assert args == ["train", "configs/adult.yaml", "--epochs", "3"]
    path, command, rest = _leaf(args)
    assert _parse_error(command, path, rest) == "No such option: --epochs"
    assert _parse_error(command, path, rest[:1]) is None
