"""Every example config in configs/ validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.build import load_config
from tests.tiny_models import build_tiny_cross_encoder

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def cross_encoder_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "cross-encoder")


@pytest.fixture(autouse=True)
def _user_model_folders(monkeypatch: pytest.MonkeyPatch, cross_encoder_folder: Path) -> None:
    """Examples read the user's reranker folder from the environment, and validation checks
    that it exists: give them a real (tiny) one."""
    monkeypatch.setenv("RERANKER_MODEL", str(cross_encoder_folder))


def test_there_are_example_configs() -> None:
    assert any(p.name == "quickstart.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_validates(path: Path) -> None:
    spec = load_config(path)
    assert spec.loaded.app.name


def test_every_generator_backend_has_an_example() -> None:
    shown = {load_config(p).loaded.app.generator.type for p in CONFIGS}
    assert {"extractive", "openai_compat", "vllm", "tgi", "ollama", "hf_local"} <= shown
