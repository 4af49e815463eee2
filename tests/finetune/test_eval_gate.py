"""The eval-suite gate of a fine-tuning job (``registry.eval_suite``): the trained adapter runs
through the suite as the variant ``adapter`` beside the base model (``baseline``), and the
gates on that variant decide whether it is registered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llmops.cli.main import app
from llmops.config import load_finetune_config
from llmops.errors import ConfigError
from tests.conftest import HASHING, ConfigWriter
from tests.eval_suite_data import write_suite
from tests.finetune.jobs import tiny_model, write_job


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture
def suite(tmp_path: Path, write_config: ConfigWriter, model: Path) -> Path:
    """A RAG app answering with hf_local on the tiny base model, and a 2-question suite over
    it whose own gate (no failed answer) both variants can pass."""
    generator = {"type": "hf_local", "model": str(model), "max_tokens": 4}
    config = write_config(embedder=HASHING, generator=generator)
    return write_suite(
        tmp_path,
        config,
        dataset={"path": "qa.jsonl", "limit": 2},
        metrics=["hit@2", "token_f1"],
        gates=["error_rate <= 0"],
        resamples=100,
    )


def _job(folder: Path, model: Path, suite: Path, eval_gates: list[str]) -> Path:
    folder.mkdir()
    registry = {"track": True, "eval_suite": str(suite), "eval_gates": eval_gates}
    return write_job(folder, model, max_steps=2, every=2, registry=registry)


def test_an_adapter_passing_the_suite_gates_is_registered_with_the_run_recorded(
    model: Path, suite: Path, tmp_path: Path
) -> None:
    import mlflow

    from llmops.pipelines.finetune import run_job

    gates = ["error_rate <= baseline", "token_f1 >= baseline - 1"]
    job = _job(tmp_path / "job", model, suite, gates)
    result = run_job(load_finetune_config(job))

    assert [str(g.gate) for g in result.eval_gates] == [
        "error_rate <= 0",
        "error_rate <= baseline",
        "token_f1 >= baseline - 1",
    ]
    assert all(g.note.startswith("baseline ") for g in result.eval_gates[1:])  # its value read
    assert result.passed and result.version is not None
    assert result.version.aliases == ("candidate",)
    assert result.eval_report is not None and result.eval_report.is_file()
    run_dir = result.eval_report.parent
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["variants"]) == {"baseline", "adapter"}
    assert "token_f1" in summary["comparisons"]["adapter"]  # compared with the base model
    kept = yaml.safe_load((run_dir / "suite.yaml").read_text())
    (variant,) = kept["variants"]
    assert variant["generator"]["default_adapter"] == "tiny-lora"
    assert variant["generator"]["adapters"] == {"tiny-lora": str(result.adapter_dir.resolve())}
    assert variant["generator"]["max_tokens"] == 4  # the app's sampling settings are kept
    assert not list(suite.parent.glob(".suite.*.finetune.yaml"))  # the copy moved away
    # both variants answered every question: the adapter really ran
    for name in ("baseline", "adapter"):
        rows = (run_dir / f"samples-{name}.jsonl").read_text().splitlines()
        assert len(rows) == 2 and all(json.loads(r).get("error") is None for r in rows)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'job' / 'out' / 'mlflow.db'}")
    assert result.eval_run_id is not None
    assert client.get_run(result.eval_run_id).data.params["suite"] == "tiny"
    tags = client.get_model_version("tiny-lora", str(result.version.version)).tags
    assert tags.get("finetune.eval_run") == result.eval_run_id


def test_an_adapter_failing_a_suite_gate_is_not_registered_and_the_cli_exits_1(
    model: Path, suite: Path, tmp_path: Path
) -> None:
    from llmops.models.registry import ModelRegistry

    job = _job(tmp_path / "job", model, suite, ["token_f1 >= baseline + 1"])
    outcome = CliRunner().invoke(app, ["finetune", "run", str(job)])

    assert outcome.exit_code == 1, outcome.output
    assert "eval suite report:" in outcome.output
    assert "FAIL  token_f1 >= baseline + 1" in outcome.output
    assert "not registered" in outcome.output
    uri = f"sqlite:///{tmp_path / 'job' / 'out' / 'mlflow.db'}"
    assert "tiny-lora" not in ModelRegistry(uri).names()


def test_eval_gates_need_a_suite_and_the_suite_file_must_exist(model: Path, tmp_path: Path) -> None:
    job = write_job(tmp_path, model, registry={"eval_gates": ["token_f1 >= baseline"]})
    with pytest.raises(ConfigError, match="set eval_suite too"):
        load_finetune_config(job)
    job = write_job(tmp_path, model, registry={"eval_suite": "nowhere.yaml"})
    with pytest.raises(ConfigError) as caught:
        load_finetune_config(job)
    (issue,) = caught.value.issues
    assert issue.path == "registry.eval_suite" and "does not exist" in issue.message
    (tmp_path / "suite.yaml").write_text("name: s\n")
    registry = {"eval_suite": "suite.yaml", "eval_gates": ["f1 >= production"]}
    job = write_job(tmp_path, model, registry=registry)
    with pytest.raises(ConfigError, match="cannot read the gate"):
        load_finetune_config(job)
