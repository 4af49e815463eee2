"""A registered version's ONNX export served behind scikit-learn's predict API
(``predict``, ``predict_proba``, ``classes_``, ``feature_names_in_``), so the serving path,
drift references and shadows use it unchanged. ONNX Runtime answers one row in about 0.1 ms
where a scikit-learn Pipeline spends milliseconds on per-call overhead (docs/benchmarks.md).

The ONNX file is the one ``registry: {onnx: true}`` logged with the version's run, after
checking its parity with the fitted pipeline on the test rows.
"""

from __future__ import annotations

from typing import Any

from llmops.deps import require
from llmops.models.onnx_export import EXPORT_EXTRA, ONNX_FILE, onnx_inputs
from llmops.models.registry import ModelRegistry, ModelVersion

ONNX_ARTIFACT = f"onnx/{ONNX_FILE}"


class OnnxModel:
    """ONNX Runtime in place of a fitted regressor (``OnnxClassifier``: of a classifier)."""

    def __init__(self, onnx_bytes: bytes, fitted: Any) -> None:
        ort = require("onnxruntime", EXPORT_EXTRA)
        options = ort.SessionOptions()
        # idle threads must not spin between requests: they would take the CPU from the
        # event loop and the other threads of the server
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.feature_names_in_ = fitted.feature_names_in_
        self.outputs = [output.name for output in self.session.get_outputs()]

    def _run(self, output: str, frame: Any) -> Any:
        (values,) = self.session.run([output], onnx_inputs(frame, self.session))
        return values

    def predict(self, frame: Any) -> Any:
        return self._run(self.outputs[-1], frame).reshape(-1)


class OnnxClassifier(OnnxModel):
    def __init__(self, onnx_bytes: bytes, fitted: Any) -> None:
        super().__init__(onnx_bytes, fitted)
        self.classes_ = fitted.classes_

    def predict_proba(self, frame: Any) -> Any:
        return self._run("probabilities", frame)

    def predict(self, frame: Any) -> Any:
        return self.classes_[self.predict_proba(frame).argmax(axis=1)]


def onnx_model(registry: ModelRegistry, version: ModelVersion, fitted: Any) -> OnnxModel | None:
    """The version's ONNX export as a model, or None when it was registered without one."""
    data = registry.run_file(version, ONNX_ARTIFACT)
    if data is None:
        return None
    return OnnxClassifier(data, fitted) if hasattr(fitted, "classes_") else OnnxModel(data, fitted)
