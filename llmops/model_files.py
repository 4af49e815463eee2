"""The identity of a model folder on disk, shared by the trainer (which records it in an
adapter's manifest) and the servers and registry (which check an adapter against the base
model they hold)."""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
_BLOCK = 1 << 20


def base_model_sha256(model_dir: Path) -> str:
    """SHA-256 over a model folder's ``config.json`` and then its weight files
    (``*.safetensors``, ``*.bin``) in sorted name order, each file's bytes in turn: equal
    hashes mean the same weights. FileNotFoundError when there is no config.json."""
    model_dir = Path(model_dir)
    config = model_dir / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"not a model folder (no config.json): {model_dir}")
    weights = sorted(
        {p for pattern in WEIGHT_PATTERNS for p in model_dir.glob(pattern) if p.is_file()},
        key=lambda p: p.name,
    )
    digest = hashlib.sha256()
    for path in (config, *weights):
        with path.open("rb") as handle:
            while block := handle.read(_BLOCK):
                digest.update(block)
    return digest.hexdigest()
