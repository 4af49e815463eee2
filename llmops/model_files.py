"""The identity of a model folder on disk: ``base_model_sha256`` (every byte), shared by the
trainer (which records it in an adapter's manifest) and the servers and registry (which check an
adapter against the base model they hold); ``content_identity`` (sampled), cheap enough for each
start, for the embedder's index fingerprint and its ONNX export cache."""

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


SAMPLES, SAMPLE_BYTES = 64, 64 << 10


def content_identity(folder: Path) -> str:
    """A content hash of every file under ``folder`` that is cheap enough for each start: each
    file's relative path and size, and its bytes (all of a file up to 4 MiB, 64 evenly spaced
    64 KiB samples of a larger one: retraining rewrites every layer's range of a weight file,
    and the samples fall in each). A copied folder keeps its identity; a model retrained in
    place gets a new one."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder).as_posix()}|{size}\n".encode())
        with path.open("rb") as handle:
            if size <= SAMPLES * SAMPLE_BYTES:
                digest.update(handle.read())
                continue
            for i in range(SAMPLES):
                handle.seek(i * (size - SAMPLE_BYTES) // (SAMPLES - 1))
                digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()
