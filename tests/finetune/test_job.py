"""Job config errors (file:line), validate/schema, and short in-process runs (SFT, distill)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmops.cli.main import app
from llmops.config import load_finetune_config
from llmops.errors import ConfigError
from tests.finetune.jobs import tiny_model, write_job
from tests.tiny_models import build_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("base") / "tiny")


def test_a_missing_base_model_folder_is_a_located_config_error(tmp_path: Path) -> None:
    job = write_job(tmp_path, tmp_path / "nowhere")
    with pytest.raises(ConfigError) as caught:
        load_finetune_config(job)
    (issue,) = caught.value.issues
    assert issue.path == "base_model" and issue.line == 3
    assert "base model folder does not exist" in issue.message


def test_a_missing_chat_template_is_a_located_config_error(tmp_path: Path) -> None:
    folder = build_tiny_model(tmp_path / "bare", hidden_size=32)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    job = write_job(tmp_path, folder)
    with pytest.raises(ConfigError, match="need a chat template") as caught:
        load_finetune_config(job)
    assert caught.value.issues[0].path == "datasets.train.0.format"
    (tmp_path / "t.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    fixed = write_job(tmp_path, folder, chat_template="t.jinja")
    assert load_finetune_config(fixed).job.chat_template == "t.jinja"


def test_unknown_keys_and_bad_values_are_all_reported(model: Path, tmp_path: Path) -> None:
    job = write_job(tmp_path, model, lora={"r": 0, "rank": 4})
    with pytest.raises(ConfigError) as caught:
        load_finetune_config(job)
    assert {i.path for i in caught.value.issues} == {"lora.r", "lora.rank"}


def test_validate_and_schema_know_finetune_jobs(model: Path, tmp_path: Path) -> None:
    job = write_job(tmp_path, model)
    result = CliRunner().invoke(app, ["validate", str(job)])
    assert result.exit_code == 0, result.output
    assert "tiny-lora" in result.output
    schema = CliRunner().invoke(app, ["config", "schema", "--kind", "finetune"])
    assert schema.exit_code == 0
    assert "DistillObjective" in json.loads(schema.stdout)["$defs"]


def test_a_bad_data_line_exits_2_naming_file_and_line(model: Path, tmp_path: Path) -> None:
    job = write_job(tmp_path, model, max_steps=1)
    with (tmp_path / "train.jsonl").open("a") as handle:
        handle.write("{not json\n")
    result = CliRunner().invoke(app, ["finetune", "run", str(job)])
    assert result.exit_code == 2
    assert "train.jsonl:49: invalid JSON" in result.output


@pytest.mark.slow
def test_a_job_writes_adapter_manifest_and_mlflow_run(model: Path, tmp_path: Path) -> None:
    from llmops.pipelines.finetune import run_job

    job = write_job(tmp_path, model, max_steps=3, every=2, track=True)
    result = run_job(load_finetune_config(job))
    out = tmp_path / "out"
    assert result.adapter_dir == out and result.steps == 3
    for name in ("adapter_config.json", "adapter_model.safetensors", "job.yaml", "manifest.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target_modules"] == "all-linear" and manifest["objective"] == "sft"
    assert len(manifest["base_model_sha256"]) == 64
    assert manifest["final_eval_loss"] == pytest.approx(result.metrics["eval_loss"])
    import mlflow

    run = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow.db'}").get_run(result.run_id)
    assert run.data.params["lora.r"] == "4"
    assert "loss" in run.data.metrics and run.info.status == "FINISHED"


@pytest.mark.slow
def test_distillation_runs_two_steps(model: Path, tmp_path: Path) -> None:
    from llmops.pipelines.finetune import run_job

    teacher = build_tiny_model(tmp_path / "teacher", seed=5, hidden_size=64)
    objective = {"type": "distill", "teacher": str(teacher), "alpha": 0.7, "temperature": 2.0}
    job = write_job(tmp_path, model, max_steps=2, objective=objective)
    result = run_job(load_finetune_config(job))
    assert result.steps == 2 and result.manifest["objective"] == "distill"


def test_distill_loss_mixes_kl_and_hard_loss() -> None:
    import torch

    from llmops.finetune.distill import distill_loss

    torch.manual_seed(0)
    student = torch.randn(1, 4, 6)
    labels = torch.tensor([[-100, -100, 3, 2]])
    hard = torch.tensor(1.5)
    assert distill_loss(student, student, labels, hard, 0.5, 2.0).item() == pytest.approx(0.75)
    other = torch.randn(1, 4, 6)
    assert distill_loss(student, other, labels, hard, 1.0, 2.0).item() > 0
    assert distill_loss(student, other, labels, hard, 0.0, 2.0).item() == pytest.approx(1.5)


@pytest.mark.slow
async def test_a_trained_adapter_passing_its_gates_is_registered_and_served_by_alias(
    model: Path, tmp_path: Path
) -> None:
    """finetune run → gates → registered version (alias candidate) → hf_local serves
    ``models:/tiny-lora@candidate`` and answers; a failed gate registers nothing."""
    from llmops.generation.hf_local import HFLocalGenerator
    from llmops.models.adapters import RegistryAdapterSource
    from llmops.models.registry import ModelRegistry
    from llmops.pipelines.finetune import run_job
    from tests.finetune.test_adapter_serving import ask

    (tmp_path / "failing").mkdir()
    (tmp_path / "job").mkdir()
    failing = write_job(
        tmp_path / "failing", model, max_steps=2, every=2, track=True,
        registry={"track": True, "gates": ["eval_loss <= 0.0001"]},
    )  # fmt: skip
    refused = run_job(load_finetune_config(failing))
    assert not refused.passed and refused.version is None
    uri = f"sqlite:///{tmp_path / 'failing' / 'out' / 'mlflow.db'}"
    assert "tiny-lora" not in ModelRegistry(uri).names()

    job = write_job(
        tmp_path / "job", model, max_steps=3, every=3, track=True,
        registry={"track": True, "gates": ["eval_loss <= 100", "eval_perplexity > 0"]},
    )  # fmt: skip
    result = run_job(load_finetune_config(job))
    assert result.passed and result.version is not None
    assert result.version.aliases == ("candidate",)
    uri = f"sqlite:///{tmp_path / 'job' / 'out' / 'mlflow.db'}"
    config = HFLocalGenerator.Config(
        model=str(model),
        adapters={"support": "models:/tiny-lora@candidate"},
        default_adapter="support",
        registry_uri=uri,
        max_tokens=8,
    )
    generator = HFLocalGenerator(config, adapter_source=RegistryAdapterSource)
    await generator.start()
    try:
        answer = await generator.generate(ask())
        assert answer.text is not None
        assert generator.adapter_status()["support"]["version"] == result.version.version
    finally:
        await generator.close()
