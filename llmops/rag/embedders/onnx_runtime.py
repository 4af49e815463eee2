"""Run a sentence-transformers model with ONNX Runtime instead of torch.

Reads what the model folder declares (``modules.json``: a Transformer, then Pooling, then
optionally Normalize; ``sentence_bert_config.json``: max_seq_length, do_lower_case), exports
the transformer once (``onnx_export``), and encodes with the model's fast tokenizer, an
``InferenceSession`` and the declared pooling in numpy. Models with other modules (Dense
layers, custom code) are refused with a clear error: use the torch backend for them.

Each call is tokenized once, without padding; batches are cut in token-length order and padded
only to their own longest text (``bucketing``), and the vectors come back in the callers' order.

A call's batches run side by side, one per core ("lanes"), each on one thread, rather than one
after the other with every operator split across the cores: MiniLM's matrices are too small for
the cores to share one well (2 cores, AMD EPYC Zen 3, bench/onnx_lanes.py: SciFact claims in
groups of 32 1.13x the queries/s, ingestion 1.02-1.03x), and nothing spin-waits between
operators. A call of one batch runs on a second session that splits it over every core.
"""

from __future__ import annotations

import copy
import json
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmops.cpus import usable_cores
from llmops.deps import require
from llmops.errors import ComponentError
from llmops.protocols import Vectors
from llmops.rag.embedders.bucketing import length_batches, pad_features
from llmops.rag.embedders.onnx_export import Quantize, ensure_exported

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "lasttoken")
# sentence-transformers' legacy boolean keys, in its concatenation order
_LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class ModelLayout:
    """What a sentence-transformers model folder declares."""

    transformer: Path
    pooling: tuple[str, ...] = ("mean",)
    normalize: bool = False
    max_seq_length: int | None = None
    do_lower_case: bool = False


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default


def _unsupported(folder: Path, what: str) -> ComponentError:
    return ComponentError(
        f"embedder: {folder} uses {what}, which backend: onnx does not run; "
        "use backend: torch for this model"
    )


def pooling_modes(config: dict[str, Any]) -> tuple[str, ...]:
    """The pooling modes of a ``1_Pooling/config.json`` (new or legacy keys)."""
    mode = config.get("pooling_mode")
    if mode is None:
        legacy = [m for key, m in _LEGACY_POOLING.items() if config.get(key)]
        return tuple(legacy) or ("mean",)
    return (mode,) if isinstance(mode, str) else tuple(mode)


def _pooling(folder: Path, config: dict[str, Any]) -> tuple[str, ...]:
    if config.get("include_prompt") is False:
        raise _unsupported(folder, "pooling that excludes the prompt")
    modes = pooling_modes(config)
    for mode in modes:
        if mode not in POOLING_MODES:
            raise _unsupported(folder, f"{mode} pooling")
    return modes


def read_layout(folder: Path) -> ModelLayout:
    """The modules a model folder declares; a plain transformers folder means mean pooling."""
    transformer, normalize = folder, False
    pooling: tuple[str, ...] = ("mean",)
    for module in _read_json(folder / "modules.json", []):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        path = folder / module.get("path", "")
        if kind == "Transformer":
            transformer = path
        elif kind == "Pooling":
            pooling = _pooling(folder, _read_json(path / "config.json", {}))
        elif kind == "Normalize":
            normalize = True
        else:
            raise _unsupported(folder, f"a {kind} module")
    settings = _read_json(transformer / "sentence_bert_config.json", {})
    return ModelLayout(
        transformer,
        pooling,
        normalize,
        settings.get("max_seq_length"),
        bool(settings.get("do_lower_case")),
    )


def pool(hidden: np.ndarray, mask: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """sentence-transformers pooling of token vectors (batch, sequence, dim) under ``mask``."""
    weights = mask[..., None].astype(np.float32)
    lengths = np.clip(weights.sum(1), 1e-9, None)
    parts = []
    for mode in modes:
        if mode == "cls":  # the first real token (left padding moves it)
            parts.append(hidden[np.arange(len(hidden)), mask.argmax(1)])
        elif mode == "max":
            parts.append(np.where(weights > 0, hidden, -np.inf).max(1))
        elif mode == "mean":
            parts.append((hidden * weights).sum(1) / lengths)
        elif mode == "mean_sqrt_len_tokens":
            parts.append((hidden * weights).sum(1) / np.sqrt(lengths))
        else:  # lasttoken: the last real token, whichever side was padded
            last = mask.shape[1] - 1 - mask[:, ::-1].argmax(1)
            parts.append(hidden[np.arange(len(hidden)), last])
    return np.concatenate(parts, axis=1).astype(np.float32)


def session_options(ort: Any, threads: int) -> Any:
    """Operators one after the other, each split over ``threads`` threads (one: the caller's),
    which do not spin-wait between operators (spinning threads take the cores from the rest of
    the app: the requests between two queries, the other lanes)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _session(ort: Any, model_file: Path, threads: int) -> Any:
    return ort.InferenceSession(
        str(model_file), session_options(ort, threads), providers=["CPUExecutionProvider"]
    )


class OnnxEncoder:
    """A sentence-transformers model run by ONNX Runtime; ``start()`` exports at first use.
    ``lanes``: batches run at once (default: one per core the process may use, ``llmops.cpus``),
    each batch's operators split over the cores left to its lane (one thread each by default). A
    call of one batch (a lone query) runs on a second session whose operators use every core: on
    one core it took 1.4x as long (docs/benchmarks.md)."""

    def __init__(
        self,
        folder: Path,
        cache: Path,
        quantize: Quantize,
        max_seq_length: int | None = None,
        lanes: int | None = None,
    ) -> None:
        self.folder, self.cache, self.quantize = folder, cache, quantize
        self.cores = usable_cores()  # read once: cgroup files
        self.lanes = max(1, lanes or self.cores)
        self._lane_pool: ThreadPoolExecutor | None = None
        self._override = max_seq_length
        self.layout = ModelLayout(folder)
        self.max_seq_length = 0
        self.dimension = 0
        self.model_file: Path | None = None
        self.exported = False
        self._session: Any = None  # the lanes'
        self._wide: Any = None  # a lone batch's
        self._inputs: list[str] = []
        self._tokenizer: Any = None
        self._pad_values: dict[str, int] = {}
        self._counter: Any = None
        self._count_lock = threading.Lock()

    def start(self) -> None:
        transformers = require("transformers", "rag")
        self.layout = read_layout(self.folder)
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.layout.transformer))
        # counting gets its own tokenizer (why: see TorchModel.__init__)
        self._counter = copy.deepcopy(self._tokenizer)
        self.max_seq_length = self._override or self._model_limit()
        self.model_file, self.exported = ensure_exported(
            self.layout.transformer, self.cache, self.max_seq_length, self.quantize
        )
        self.load(self.model_file)

    def load(self, model_file: Path) -> None:
        """Run ``model_file`` (the export, or a variant of it in a benchmark) from now on."""
        ort = require("onnxruntime", "onnx")
        self._session = self._wide = _session(ort, model_file, max(1, self.cores // self.lanes))
        if self.lanes > 1 and self.cores > 1:
            self._wide = _session(ort, model_file, self.cores)
        if self.lanes > 1 and self._lane_pool is None:
            self._lane_pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="llmops-onnx")
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._pad_values = {
            "input_ids": int(self._tokenizer.pad_token_id or 0),
            "token_type_ids": int(getattr(self._tokenizer, "pad_token_type_id", 0)),
        }
        self.dimension = int(self.encode(["probe"], 1, False).shape[1])

    def _model_limit(self) -> int:
        """sentence-transformers' rule: the folder's max_seq_length, else the tokenizer's limit
        capped by the model's position embeddings."""
        if self.layout.max_seq_length:
            return int(self.layout.max_seq_length)
        config = _read_json(self.layout.transformer / "config.json", {})
        positions = config.get("max_position_embeddings", -1)
        limit = int(self._tokenizer.model_max_length)
        return min(limit, positions) if positions > 0 else limit

    def close(self) -> None:
        if self._lane_pool is not None:
            self._lane_pool.shutdown()
            self._lane_pool = None
        self._session = self._wide = self._tokenizer = self._counter = None

    def _texts(self, texts: Sequence[str]) -> list[str]:
        return [t.lower() for t in texts] if self.layout.do_lower_case else list(texts)

    def encode(self, texts: Sequence[str], batch_size: int, normalize: bool) -> Vectors:
        """Vectors of ``texts`` in order; batches are cut in token-length order, small enough
        that every lane gets one, and run side by side."""
        if self._session is None:
            raise RuntimeError("embedder not started: call start() first")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        features = self._tokenizer(
            self._texts(texts), truncation=True, max_length=self.max_seq_length, verbose=False
        )
        features = {name: features[name] for name in {*self._inputs, "attention_mask"}}
        left = self._tokenizer.padding_side == "left"
        size = min(batch_size, math.ceil(len(texts) / self.lanes))
        batches = length_batches([len(ids) for ids in features["input_ids"]], size)

        def run(picked: list[int], session: Any = self._session) -> Vectors:
            return self._batch(session, pad_features(features, picked, self._pad_values, left))

        if len(batches) == 1 or self._lane_pool is None:
            parts = [run(picked, self._wide) for picked in batches]
        else:
            parts = list(self._lane_pool.map(run, batches))
        out = np.zeros((len(texts), parts[0].shape[1]), dtype=np.float32)
        for picked, part in zip(batches, parts, strict=True):
            out[picked] = part
        if normalize or self.layout.normalize:
            out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out

    def _batch(self, session: Any, padded: dict[str, np.ndarray]) -> Vectors:
        hidden = session.run(None, {name: padded[name] for name in self._inputs})[0]
        return pool(hidden, padded["attention_mask"], self.layout.pooling)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self._counter is None:
            raise RuntimeError("embedder not started: call start() first")
        with self._count_lock:
            encoded = self._counter(self._texts(texts), add_special_tokens=True, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]
