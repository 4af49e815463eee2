"""The llmops command line, through Typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from llmops.cli.main import app
from tests.conftest import ConfigWriter

runner = CliRunner()


def test_help_teaches_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("up", "ingest", "query", "validate", "config", "components"):
        assert command in result.output


def test_validate_ok_and_bad(write_config: ConfigWriter, tmp_path: Path) -> None:
    good = write_config()
    bad = write_config("bad.yaml", chunker={"type": "recursiv"})
    ok = runner.invoke(app, ["validate", str(good)])
    assert ok.exit_code == 0 and "ok" in ok.output
    failed = runner.invoke(app, ["validate", str(good), str(bad)])
    assert failed.exit_code == 2
    assert "did you mean 'recursive'" in failed.output


def test_ingest_then_query_json(write_config: ConfigWriter) -> None:
    config = write_config()
    ingested = runner.invoke(app, ["ingest", str(config)])
    assert ingested.exit_code == 0, ingested.output
    assert "4 added" in ingested.output
    result = runner.invoke(
        app, ["query", "How do I restore a backup?", "-c", str(config), "--json"]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["sources"][0]["source"] == "docs/backup.md"


def test_query_rejects_bad_filter(write_config: ConfigWriter) -> None:
    config = write_config()
    runner.invoke(app, ["ingest", str(config)])
    result = runner.invoke(app, ["query", "x", "-c", str(config), "--filter", "{oops"])
    assert result.exit_code == 1 and "not valid JSON" in result.output


def test_config_show_fills_defaults(write_config: ConfigWriter) -> None:
    config = write_config()
    result = runner.invoke(app, ["config", "show", str(config)])
    assert result.exit_code == 0, result.output
    for line in ("top_k: 4", "type: sentence_transformers", "backend: torch", "type: chroma"):
        assert line in result.output


def test_config_schema_lists_component_types(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    result = runner.invoke(app, ["config", "schema", "-o", str(out)])
    assert result.exit_code == 0
    schema = json.loads(out.read_text())
    chunkers = {
        v["properties"]["type"]["const"] for v in schema["$defs"]["chunker_component"]["oneOf"]
    }
    assert {"recursive", "markdown", "token"} <= chunkers


def test_config_schema_of_model_apps(tmp_path: Path) -> None:
    out = tmp_path / "model.schema.json"
    result = runner.invoke(app, ["config", "schema", "--kind", "model", "-o", str(out)])
    assert result.exit_code == 0, result.output
    properties = json.loads(out.read_text())["properties"]
    assert {"data", "features", "search", "routing", "monitoring", "schema"} <= set(properties)
    assert runner.invoke(app, ["config", "schema", "--kind", "nope"]).exit_code == 2


def test_components_lists_kinds_and_install_state() -> None:
    result = runner.invoke(app, ["components"])
    assert result.exit_code == 0
    for name in ("chroma", "sentence_transformers", "extractive", "markdown", "pdf"):
        assert name in result.output
