"""A model folder's sampled content identity: cheap for large weight files, blind to file times
and to where the folder lies, and changed by rewriting any layer's range of a weight file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from llmops.model_files import SAMPLE_BYTES, SAMPLES, content_identity


def model_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 384}')
    weights = np.random.default_rng(0).bytes(6 * SAMPLES * SAMPLE_BYTES)  # 24 MiB: sampled
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    return folder


def test_copies_and_file_times_keep_the_identity(tmp_path: Path) -> None:
    model = model_folder(tmp_path / "model")
    identity = content_identity(model)
    copy = shutil.copytree(model, tmp_path / "elsewhere" / "model")
    for file in copy.rglob("*"):
        os.utime(file, ns=(1, 1))
    assert content_identity(copy) == identity


def test_any_rewritten_layer_or_small_file_changes_it(tmp_path: Path) -> None:
    model = model_folder(tmp_path / "model")
    identity = content_identity(model)
    weights = bytearray((model / "model.safetensors").read_bytes())
    layer = len(weights) // 12  # the smallest range a retraining rewrites, in a 12-layer model
    for start in range(0, len(weights) - layer, layer // 3):
        changed = weights.copy()
        changed[start : start + layer] = bytes(layer)
        (model / "model.safetensors").write_bytes(changed)
        assert content_identity(model) != identity, start
    (model / "model.safetensors").write_bytes(weights)
    assert content_identity(model) == identity
    (model / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert content_identity(model) != identity
