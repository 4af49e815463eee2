"""Offline graph work on an exported transformer: operator fusion, then int8 quantization.

Fusion runs ONNX Runtime's transformer optimizer (``onnxruntime.transformers.optimizer``,
its Python fusions only: the graph stays portable across CPUs) for BERT-type encoders:
Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization. Quantization is ONNX
Runtime's dynamic recipe: int8 weights per output channel, uint8 activations quantized at run
time, with the weight range chosen for the CPU (``onnx_int8``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from llmops.deps import require
from llmops.rag.embedders.onnx_int8 import Int8Mode

# architectures whose graphs the optimizer's "bert" fusions were checked on; others stay unfused
FUSED_MODEL_TYPES = frozenset({"bert"})
QUANTIZED_OPS = ("MatMul", "Attention")


@dataclass(frozen=True)
class Shape:
    """What the optimizer needs to know of the model (its ``config.json``)."""

    model_type: str
    num_heads: int
    hidden_size: int


@contextmanager
def quiet_onnxruntime() -> Iterator[None]:
    """The optimizer and the quantizer log advice meant for their developers on the root
    logger; an export is one step for our users, announced by one line."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def fuse(graph: Path, out: Path, shape: Shape) -> dict[str, int]:
    """Write ``graph`` with transformer operators fused to ``out``; returns the fused operator
    counts (empty, and ``graph`` copied, for architectures not in ``FUSED_MODEL_TYPES``)."""
    if shape.model_type not in FUSED_MODEL_TYPES:
        out.write_bytes(graph.read_bytes())
        return {}
    optimizer = require("onnxruntime.transformers.optimizer", "onnx")
    with quiet_onnxruntime():
        model = optimizer.optimize_model(
            str(graph),
            model_type="bert",
            num_heads=shape.num_heads,
            hidden_size=shape.hidden_size,
            opt_level=0,  # Python fusions only; the session applies its own at load
        )
        model.save_model_to_file(str(out))
    return {op: n for op, n in model.get_fused_operator_statistics().items() if n}


def quantize(graph: Path, out: Path, mode: Int8Mode) -> None:
    """Dynamic int8 quantization of ``graph``'s MatMul and Attention weights into ``out``."""
    quantization = require("onnxruntime.quantization", "onnx")
    onnx = require("onnx", "onnx")
    with quiet_onnxruntime():
        quantization.quantize_dynamic(
            str(graph),
            str(out),
            weight_type=quantization.QuantType.QInt8,
            per_channel=True,
            reduce_range=mode.reduce_range,
            op_types_to_quantize=list(QUANTIZED_OPS),
            # ONNX's shape inference does not type the fused operators' outputs (Microsoft's
            # domain); every tensor here is float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
