"""llmops config show | schema"""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml

from llmops.build import config_json_schema, load_config
from llmops.cli.common import DEFAULT_CONFIG, ConfigArg, console, run
from llmops.config import FinetuneConfig, ModelAppConfig, mask_secrets

app = typer.Typer(help="Inspect configuration: the resolved file, or the JSON Schema.")


@app.command()
def show(config: ConfigArg = DEFAULT_CONFIG) -> None:
    """Print the config as llmops sees it: defaults filled in, ${ENV} resolved, secrets masked."""
    spec = run(lambda: load_config(config))
    resolved = spec.loaded.app.model_dump(mode="json", by_alias=True)
    for key, component in spec.components.items():
        dumped = {"type": component.entry.name, **component.config.model_dump(mode="json")}
        section, _, index = key.partition(".")  # "fallback.0" -> resolved["fallbacks"][0]
        if index:
            resolved["fallbacks"][int(index)] = dumped
        else:
            resolved[section] = dumped
    masked = mask_secrets(resolved, spec.loaded.secret_paths)
    console.print(yaml.safe_dump(masked, sort_keys=False), markup=False)


@app.command()
def schema(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file."),
    kind: str = typer.Option(
        "rag",
        "--kind",
        help="rag: RAG app configs; model: model apps (`kind: model`); finetune: fine-tuning "
        "jobs (`kind: finetune`).",
    ),
) -> None:
    """Print the JSON Schema of app configs, for editor autocompletion.

    VS Code (YAML extension): put `# yaml-language-server: $schema=./llmops.schema.json`
    at the top of a config after `llmops config schema -o llmops.schema.json`
    (`--kind model -o model.schema.json` for model apps).
    """
    if kind not in ("rag", "model", "finetune"):
        raise typer.BadParameter(f"'{kind}': use rag, model or finetune", param_hint="--kind")
    if kind == "rag":
        found = config_json_schema()
    else:
        shape = ModelAppConfig if kind == "model" else FinetuneConfig
        found = shape.model_json_schema(by_alias=True)
    text = json.dumps(found, indent=2)
    if output:
        output.write_text(text + "\n")
        console.print(f"wrote {output}")
    else:
        typer.echo(text)
