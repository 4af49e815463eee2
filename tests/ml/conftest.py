"""A model app trained once per module and promoted to production, for serving tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.config import load_model_app_config
from llmops.pipelines.train import Training
from tests.ml.test_train import registry, write_app


def train(config: Path) -> int:
    report = Training(load_model_app_config(config)).run()
    assert report.version is not None
    return report.version.version


@pytest.fixture(scope="module")
def served_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serving")
    config = write_app(root, trials=2)
    config.write_text(config.read_text() + "serving: {refresh_s: 0.2, max_rows: 50}\n")
    train(config)
    registry(root).promote("adult")
    return config
