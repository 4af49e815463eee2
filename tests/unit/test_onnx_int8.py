"""The int8 ONNX recipe: the weight range chosen from CPU flags, length bucketing, and an
export of a tiny random BERT (built here) through the transformer optimizer and quantizer."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from llmops.rag.embedders import onnx_export, onnx_runtime
from llmops.rag.embedders.bucketing import length_batches, pad, pad_features, padding_ratio
from llmops.rag.embedders.onnx_int8 import AVX2, PORTABLE, VNNI, cpu_flags, int8_mode
from llmops.rag.embedders.onnx_runtime import OnnxEncoder
from tests.tiny_models import build_tiny_bert

ZEN2 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma bmi2 avx2 sha_ni"
SKYLAKE_X = f"{ZEN2} avx512f avx512dq avx512cd avx512bw avx512vl"
CASCADE_LAKE = f"{SKYLAKE_X} avx512_vnni"
ALDER_LAKE = f"{ZEN2} avx_vnni"
SAPPHIRE_RAPIDS = f"{CASCADE_LAKE} avx512_bf16 amx_tile amx_int8"


@pytest.mark.parametrize(
    ("flags", "mode"),
    [
        (ZEN2, AVX2),  # vpmaddubsw saturates: 7-bit weights
        (SKYLAKE_X, AVX2),  # AVX-512 without VNNI takes the same saturating kernel
        (CASCADE_LAKE, VNNI),
        (ALDER_LAKE, VNNI),  # AVX-VNNI (VEX) without AVX-512
        (SAPPHIRE_RAPIDS, VNNI),
        ("fpu sse sse2 ssse3 sse4_1 sse4_2", PORTABLE),  # SSE widens to 16 bits first
        ("fp asimd asimddp i8mm", PORTABLE),  # ARM dot products
        ("", PORTABLE),
    ],
)
def test_int8_mode_follows_the_instruction_set(flags: str, mode: object) -> None:
    assert int8_mode(flags.split()) == mode


def test_modes_differ_only_where_the_weights_do() -> None:
    assert AVX2.reduce_range and not VNNI.reduce_range and not PORTABLE.reduce_range
    assert AVX2.name != VNNI.name == PORTABLE.name  # identical exports share a cache entry
    assert "saturat" in AVX2.reason


def test_cpu_flags_can_be_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_CPU_FLAGS", "AVX2 fma")
    assert cpu_flags() == {"avx2", "fma"}
    monkeypatch.delenv("LLMOPS_CPU_FLAGS")
    proc = Path("/proc/cpuinfo")
    if proc.is_file():
        line = next(x for x in proc.read_text().splitlines() if x.startswith("flags"))
        assert cpu_flags() == set(line.split(":", 1)[1].split())


def test_length_batches_sort_by_tokens_and_cover_every_index() -> None:
    lengths = [5, 30, 7, 30, 2, 19, 8]
    batches = length_batches(lengths, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True)
    assert length_batches([], 4) == []


def test_padding_ratio_counts_pad_tokens_per_real_token() -> None:
    lengths = [4, 2, 4, 2]
    assert padding_ratio(lengths, [[0, 1], [2, 3]]) == pytest.approx(4 / 12)
    assert padding_ratio(lengths, length_batches(lengths, 2)) == 0.0
    assert padding_ratio([], []) == 0.0


def test_pad_right_and_left() -> None:
    rows = [[1, 2, 3], [4], []]
    np.testing.assert_array_equal(pad(rows, 0), [[1, 2, 3], [4, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(pad(rows, 9, left=True), [[1, 2, 3], [9, 9, 4], [9, 9, 9]])
    features = {"input_ids": [[5, 6], [7, 8, 9]], "attention_mask": [[1, 1], [1, 1, 1]]}
    padded = pad_features(features, [1, 0], {"input_ids": 3})
    np.testing.assert_array_equal(padded["input_ids"], [[7, 8, 9], [5, 6, 3]])
    np.testing.assert_array_equal(padded["attention_mask"], [[1, 1, 1], [1, 1, 0]])
    assert padded["input_ids"].dtype == np.int64


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model")


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize(("flags", "weights"), [(CASCADE_LAKE, "s8"), (ZEN2, "s8-7bit")])
def test_int8_export_is_fused_then_quantized_for_the_cpu(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: str, weights: str
) -> None:
    monkeypatch.setenv("LLMOPS_CPU_FLAGS", flags)
    path, exported = onnx_export.ensure_exported(tiny_bert, tmp_path, 64, "int8")
    assert exported
    meta = json.loads((path.parent / "export.json").read_text())
    assert meta["weights"] == weights and meta["exporter_version"] == onnx_export.EXPORTER_VERSION
    fused = meta["fused_operators"]
    assert fused["Attention"] == fused["SkipLayerNormalization"] // 2 == 2, fused
    assert meta["probe_min_cosine"] >= onnx_export.MIN_COSINE["int8"]
    ops = _ops(path)
    assert "QAttention" in ops and "MatMul" not in ops  # every projection runs in int8
    assert {"SkipLayerNormalization", "DynamicQuantizeLinear"} <= ops


def test_weight_range_is_part_of_the_cache_key(tiny_bert: Path, tmp_path: Path) -> None:
    vnni = onnx_export.cache_entry(tmp_path, tiny_bert, 64, "int8", VNNI)
    assert vnni == onnx_export.cache_entry(tmp_path, tiny_bert, 64, "int8", PORTABLE)
    assert vnni != onnx_export.cache_entry(tmp_path, tiny_bert, 64, "int8", AVX2)
    fp32 = onnx_export.cache_entry(tmp_path, tiny_bert, 64, "none", AVX2)
    assert fp32 == onnx_export.cache_entry(tmp_path, tiny_bert, 64, "none", VNNI)


def test_bucketed_encoding_returns_vectors_in_the_callers_order(
    tiny_bert: Path, tmp_path: Path
) -> None:
    texts = [
        "the team edition costs twenty euros per seat and month",
        "restore",
        "answer from the numbered passages and cite them",
        "to restore a backup stop the server and run the restore command with the archive",
        "teal",
        "widgetron paints widgets in teal by default",
    ]
    encoder = OnnxEncoder(tiny_bert, tmp_path, "none")
    encoder.start()
    together = encoder.encode(texts, 2, True)
    alone = np.stack([encoder.encode([t], 1, True)[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    reverse = encoder.encode(texts[::-1], 4, True)
    np.testing.assert_allclose(reverse[::-1], together, atol=1e-5)
    assert len({round(float(v[0]), 6) for v in together}) == len(texts)  # distinct vectors
    assert encoder.encode([], 4, True).shape == (0, encoder.dimension)


def test_a_calls_batches_run_side_by_side_one_thread_each(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_runtime, "usable_cores", lambda: 2)
    texts = [f"widget {i} " + "word " * (i % 7) for i in range(9)]
    serial = OnnxEncoder(tiny_bert, tmp_path, "none", lanes=1)
    serial.start()
    lanes = OnnxEncoder(tiny_bert, tmp_path, "none")  # one lane per core
    lanes.start()
    threads = {
        name: session.get_session_options().intra_op_num_threads
        for name, session in [("lanes", lanes._session), ("wide", lanes._wide)]
    }
    assert threads == {"lanes": 1, "wide": 2}
    assert serial._session is serial._wide and serial._lane_pool is None
    runners: list[tuple[str, str]] = []

    class Recording:
        def __init__(self, name: str, session: Any) -> None:
            self.name, self.session = name, session

        def run(self, *args: Any) -> Any:
            runners.append((self.name, threading.current_thread().name))
            return self.session.run(*args)

    lanes._session, lanes._wide = Recording("lanes", lanes._session), Recording("wide", lanes._wide)
    np.testing.assert_allclose(
        lanes.encode(texts, 4, True), serial.encode(texts, 4, True), atol=1e-5
    )
    assert len(runners) == 3  # batches of 4, 4, 1
    assert {(name, thread.startswith("llmops-onnx")) for name, thread in runners} == {
        ("lanes", True)
    }
    runners.clear()
    lanes.encode(texts[:3], 4, True)  # three texts, two lanes: batches of 2 and 1
    assert len(runners) == 2
    runners.clear()
    lanes.encode(["a lone query"], 4, True)  # one batch: every core, on the caller's thread
    assert runners == [("wide", threading.current_thread().name)]
    lanes.close()
    assert lanes._lane_pool is None
