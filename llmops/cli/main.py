"""The ``llmops`` command."""

from __future__ import annotations

import typer

from llmops.cli import (
    components,
    config_cmd,
    deploy_cmd,
    drift_cmd,
    eval_cmd,
    experiment_cmd,
    finetune_cmd,
    ingest,
    keys_cmd,
    models_cmd,
    predict_cmd,
    query,
    train_cmd,
    up,
    validate,
)
from llmops.deps import offline_environment

app = typer.Typer(
    name="llmops",
    help=(
        "Run retrieval-augmented generation as a service from one YAML file.\n\n"
        "Start here: `llmops up configs/quickstart.yaml` indexes the sample guide and serves "
        "http://127.0.0.1:8000. `llmops validate FILE` checks a config; `llmops query "
        '"question"` answers from the terminal.'
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(up.up)
app.command()(ingest.ingest)
app.command()(query.query)
app.command()(validate.validate)
app.command()(components.components)
app.command()(train_cmd.train)
app.command()(predict_cmd.predict)
app.add_typer(config_cmd.app, name="config")
app.add_typer(eval_cmd.app, name="eval")
app.add_typer(drift_cmd.app, name="drift")
app.add_typer(drift_cmd.requests_app, name="requests")
app.add_typer(experiment_cmd.app, name="experiment")
app.add_typer(models_cmd.app, name="models")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(finetune_cmd.app, name="finetune")
app.add_typer(deploy_cmd.app, name="deploy")


def main() -> None:
    offline_environment()
    app()


if __name__ == "__main__":
    main()
