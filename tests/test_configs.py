"""Every example config in configs/ validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.build import load_config
from llmops.config import config_kind, load_model_app_config
from tests.ml.adult_like import write_adult_like
from tests.tiny_models import build_tiny_cross_encoder

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
RAG_CONFIGS = [p for p in CONFIGS if config_kind(p) == "rag"]


@pytest.fixture(scope="module")
def cross_encoder_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "cross-encoder")


@pytest.fixture(autouse=True)
def _user_model_folders(
    monkeypatch: pytest.MonkeyPatch, cross_encoder_folder: Path, tmp_path: Path
) -> None:
    """Examples read the user's reranker folder and data folders from the environment, and
    validation checks that they exist: give them real (tiny) ones."""
    monkeypatch.setenv("RERANKER_MODEL", str(cross_encoder_folder))
    monkeypatch.setenv("ADULT_DIR", str(write_adult_like(tmp_path / "adult", 10, 10)))


def test_there_are_example_configs() -> None:
    assert any(p.name == "quickstart.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_validates(path: Path) -> None:
    if config_kind(path) == "model":
        assert load_model_app_config(path).app.name
    else:
        assert load_config(path).loaded.app.name


def test_every_generator_backend_has_an_example() -> None:
    shown = {load_config(p).loaded.app.generator.type for p in RAG_CONFIGS}
    assert {"extractive", "openai_compat", "vllm", "tgi", "ollama", "hf_local"} <= shown
