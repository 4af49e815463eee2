"""The ONNX Runtime backend of the sentence-transformers embedder, against torch (the reference),
on the real bundled MiniLM: exported once into a temporary cache shared by this module."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from llmops import RAG
from llmops.build import load_config
from llmops.errors import ComponentError, ConfigError
from llmops.rag.embedders import onnx_export
from llmops.rag.embedders.hashing import HashingEmbedder
from llmops.rag.embedders.onnx_int8 import FLAGS_VARIABLE
from llmops.rag.embedders.onnx_runtime import OnnxEncoder, pool, read_layout
from llmops.rag.embedders.sentence_transformers import (
    SentenceTransformerEmbedder,
    bundled_model_path,
)
from tests.conftest import ConfigWriter

Embedder = SentenceTransformerEmbedder

SENTENCES = [
    "How do I restore a backup?",
    "Restoring a backup replaces the current catalogue completely.",
    "The team edition costs 20 euros per seat and month.",
    "Invoices are sent on the first day of each month.",
    "Install the package with pip install widgetron.",
    "Widgetron paints widgets in teal by default.",
    "x",
    "OK",
    "42",
    "Ünïcödé wörds and émojis 🎉 still embed.",
    "def add(a: int, b: int) -> int:\n    return a + b",
    "SELECT name FROM users WHERE id = 7;",
    "The mitochondria is the powerhouse of the cell.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Insulin regulates the amount of glucose in the blood.",
    "The French Revolution began in 1789 with the storming of the Bastille.",
    "Rome was not built in a day.",
    "A stitch in time saves nine.",
    "The quick brown fox jumps over the lazy dog.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "The striker scored twice in the second half to win the final.",
    "Preheat the oven to 200 degrees and bake the bread for forty minutes.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The Pacific is the largest and deepest of the oceans.",
    "Mount Everest is the highest mountain above sea level.",
    "Use dependency injection to share a database session between path operations.",
    "FastAPI validates request bodies with Pydantic models.",
    "Return a 404 error when the item does not exist.",
    "Background tasks run after the response has been sent.",
    "CORS middleware allows browsers to call the API from another origin.",
    "OAuth2 with password flow and bearer tokens secures the endpoints.",
    "The train to Berlin leaves from platform nine at half past eight.",
    "She played the violin at the concert on Saturday evening.",
    "Quantum computers use qubits that can be in superposition.",
    "Neural networks learn representations from data by gradient descent.",
    "The contract may be terminated with three months' notice.",
    "Please keep your luggage with you at all times.",
    "Der Hund schläft im Garten unter dem Apfelbaum.",
    "Le chat dort sur le canapé du salon.",
    "El mercado abre a las nueve de la mañana.",
    "Ask not what your country can do for you.",
    "Error: connection refused (errno 111) while contacting localhost:5432.",
    "2024-05-01 12:00:03 INFO worker started with pid 4711",
    "https://example.com/docs/tutorial/first-steps?lang=en#install",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "The committee postponed the vote until the budget figures were checked. " * 3,
    "A long paragraph about indexing: "
    + "chunks are embedded, stored and kept in step with the files they came from. " * 30,
    "Bananas are berries, but strawberries are not.",
    "Turn left at the second roundabout and follow the signs to the harbour.",
]

QUERIES = {
    "how do I get my catalogue back from an archive": 1,
    "what does a seat cost": 2,
    "when do I receive the bill": 3,
    "how to install widgetron with pip": 4,
    "what colour are new widgets": 5,
    "how do plants turn sunlight into energy": 13,
    "highest mountain on earth": 25,
    "share a database session across endpoints": 26,
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


def _started(config: Embedder.Config) -> Iterator[Embedder]:
    embedder = Embedder(config)
    embedder.start()
    yield embedder
    embedder.close()


@pytest.fixture(scope="module")
def torch_embedder() -> Iterator[Embedder]:
    yield from _started(Embedder.Config(query_backend="documents"))


@pytest.fixture(scope="module")
def fp32(cache: Path) -> Iterator[Embedder]:
    yield from _started(Embedder.Config(backend="onnx", onnx_cache=str(cache)))


@pytest.fixture(scope="module")
def int8(cache: Path) -> Iterator[Embedder]:
    yield from _started(Embedder.Config(backend="onnx", quantize="int8", onnx_cache=str(cache)))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_fp32_vectors_match_torch(torch_embedder: Embedder, fp32: Embedder) -> None:
    expected = torch_embedder.embed_documents(SENTENCES)
    got = fp32.embed_documents(SENTENCES)
    assert got.shape == expected.shape == (len(SENTENCES), 384)
    assert _cosines(got, expected).min() > 0.9999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_int8_vectors_are_close_to_torch(torch_embedder: Embedder, int8: Embedder) -> None:
    cosines = _cosines(int8.embed_documents(SENTENCES), torch_embedder.embed_documents(SENTENCES))
    assert cosines.mean() > 0.98
    assert cosines.min() > 0.9


def test_int8_ranking_agrees_with_torch(torch_embedder: Embedder, int8: Embedder) -> None:
    def ranking(embedder: Embedder) -> np.ndarray:
        scores = embedder.embed_queries(list(QUERIES)) @ embedder.embed_documents(SENTENCES).T
        return np.argsort(-scores, axis=1)

    reference, quantized = ranking(torch_embedder), ranking(int8)
    assert [int(r[0]) for r in reference] == list(QUERIES.values())  # the set is meaningful
    same_top1 = sum(int(a[0] == b[0]) for a, b in zip(reference, quantized, strict=True))
    top5_overlap = [
        len(set(a[:5]) & set(b[:5])) / 5 for a, b in zip(reference, quantized, strict=True)
    ]
    assert same_top1 >= len(QUERIES) - 1
    assert np.mean(top5_overlap) >= 0.8


def test_batch_composition_does_not_change_vectors(fp32: Embedder) -> None:
    together = fp32.embed_documents(SENTENCES)
    alone = np.stack([fp32.embed_documents([s])[0] for s in SENTENCES[:8]])
    np.testing.assert_allclose(together[:8], alone, atol=1e-5)
    assert fp32.embed_documents([]).shape == (0, 384)


def test_count_tokens_and_limits_match_torch(
    torch_embedder: Embedder, fp32: Embedder, int8: Embedder
) -> None:
    expected = torch_embedder.count_tokens(SENTENCES)
    assert max(expected) > 256  # the long paragraph is over the limit: counts are not cut
    for embedder in (fp32, int8):
        assert embedder.count_tokens(SENTENCES) == expected
        assert embedder.max_seq_length == torch_embedder.max_seq_length == 256
        assert embedder.dimension == torch_embedder.dimension == 384


def test_count_tokens_of_no_texts_is_empty(
    torch_embedder: Embedder, fp32: Embedder, int8: Embedder
) -> None:
    hashing = HashingEmbedder(HashingEmbedder.Config())
    for embedder in (torch_embedder, fp32, int8, hashing):
        assert embedder.count_tokens([]) == []


def test_export_is_cached_and_reused(cache: Path, fp32: Embedder, int8: Embedder) -> None:
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 2 and not any(name.startswith(".") for name in entries)
    assert fp32.backend.exported and int8.backend.exported  # type: ignore[attr-defined]
    model_file = int8.backend.model_file  # type: ignore[attr-defined]
    before = model_file.stat().st_mtime_ns
    again = OnnxEncoder(Path(bundled_model_path()), cache, "int8")
    again.start()
    assert not again.exported and again.model_file == model_file
    assert model_file.stat().st_mtime_ns == before
    meta = json.loads((model_file.parent / "export.json").read_text())
    assert meta["quantize"] == "int8" and "attention_mask" in meta["inputs"]


def test_cache_key_follows_settings_and_model(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    base = onnx_export.cache_entry(tmp_path, folder, 256, "int8")
    assert base == onnx_export.cache_entry(tmp_path, folder, 256, "int8")
    assert base != onnx_export.cache_entry(tmp_path, folder, 128, "int8")
    assert base != onnx_export.cache_entry(tmp_path, folder, 256, "none")
    (folder / "config.json").write_text('{"changed": true}')
    assert base != onnx_export.cache_entry(tmp_path, folder, 256, "int8")


def test_failed_export_leaves_no_cache_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(model: object, encoding: object, names: list[str], path: Path) -> None:
        path.write_bytes(b"half a model")
        raise KeyboardInterrupt  # as if the export were interrupted half-way

    monkeypatch.setattr(onnx_export, "_torch_export", broken)
    folder = Path(bundled_model_path())
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        onnx_export.ensure_exported(folder, tmp_path, 256, "int8")
    assert "to ONNX (int8)" in caplog.text and "(once)" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_pooling_matches_sentence_transformers() -> None:
    import torch
    from sentence_transformers.sentence_transformer.modules import Pooling

    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 1, 1, 1]])  # right and left padding
    for mode in ("cls", "max", "mean", "mean_sqrt_len_tokens", "lasttoken"):
        features = {
            "token_embeddings": torch.tensor(hidden),
            "attention_mask": torch.tensor(mask),
        }
        expected = Pooling(4, pooling_mode=mode)(features)["sentence_embedding"].numpy()
        np.testing.assert_allclose(pool(hidden, mask, [mode]), expected, rtol=1e-5, err_msg=mode)


def test_layout_of_the_bundled_model_and_unsupported_modules(tmp_path: Path) -> None:
    layout = read_layout(Path(bundled_model_path()))
    assert (layout.pooling, layout.normalize, layout.max_seq_length) == (("mean",), True, 256)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Dense"}]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ComponentError, match=r"a Dense module.*use backend: torch"):
        read_layout(tmp_path)


def test_config_rules_and_fingerprints() -> None:
    with pytest.raises(ValidationError, match="needs backend: onnx"):
        Embedder.Config(quantize="int8")
    with pytest.raises(ValidationError, match="CPU only"):
        Embedder.Config(device="cuda", backend="onnx")
    prints = {
        Embedder(Embedder.Config(**kwargs)).fingerprint  # type: ignore[arg-type]
        for kwargs in ({}, {"backend": "onnx"}, {"backend": "onnx", "quantize": "int8"})
    }
    assert len(prints) == 3


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, "int8"),  # auto: torch documents on a CPU with VNNI, onnxruntime installed
        ({"query_backend": "documents"}, None),
        ({"query_backend": "onnx_int8"}, "int8"),
        ({"device": "cuda"}, None),  # auto never moves queries off a GPU
        ({"backend": "onnx"}, None),  # already ONNX: the documents' model serves queries
        ({"backend": "onnx", "query_backend": "onnx_int8"}, "int8"),
        ({"backend": "onnx", "quantize": "int8", "query_backend": "onnx_int8"}, None),
    ],
)
def test_query_backend_choice(
    settings: dict[str, str], expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FLAGS_VARIABLE, "avx2 avx512f avx512_vnni")
    assert Embedder(Embedder.Config.model_validate(settings)).query_onnx == expected


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("avx2 avx_vnni", "int8"), ("avx2 amx_int8", "int8"), ("avx2 avx512f", "none"), ("", "none")],
)
def test_auto_queries_are_int8_only_where_vnni_keeps_8_bit_weights(
    flags: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """7-bit weights (AVX2 without VNNI) cost dense nDCG@10 0.7 point on SciFact: fp32 there."""
    monkeypatch.setenv(FLAGS_VARIABLE, flags)
    assert Embedder(Embedder.Config()).query_onnx == expected


def test_query_backend_rules_and_fingerprint() -> None:
    with pytest.raises(ValidationError, match="CPU only"):
        Embedder.Config(device="cuda", query_backend="onnx")
    torch_print = Embedder(Embedder.Config(query_backend="documents")).fingerprint
    assert Embedder(Embedder.Config(query_backend="onnx")).fingerprint == torch_print


def test_auto_keeps_queries_on_torch_when_onnx_cannot_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unsupported(self: Embedder, quantize: str) -> None:
        raise ComponentError("embedder: custom layers, which backend: onnx does not run")

    monkeypatch.setattr(Embedder, "_onnx", unsupported)
    for embedder in _started(Embedder.Config()):
        assert embedder._query_model is embedder._model
        assert embedder.embed_queries(["a question"]).shape == (1, 384)
    with pytest.raises(ComponentError, match="does not run"):
        Embedder(Embedder.Config(query_backend="onnx")).start()


def test_onnx_queries_on_a_torch_index_match_torch(torch_embedder: Embedder, cache: Path) -> None:
    """The query side on ONNX Runtime, the documents on torch: the query vectors are torch's to
    within float rounding, so an index built with torch stays valid and ranks alike."""
    config = Embedder.Config(query_backend="onnx", onnx_cache=str(cache))
    for mixed in _started(config):
        assert isinstance(mixed._query_model, OnnxEncoder)
        queries = list(QUERIES)
        got, expected = mixed.embed_queries(queries), torch_embedder.embed_queries(queries)
        assert _cosines(got, expected).min() > 0.9999
        documents = SENTENCES[:5]
        np.testing.assert_array_equal(
            mixed.embed_documents(documents), torch_embedder.embed_documents(documents)
        )


def test_int8_without_onnx_is_a_located_config_error(write_config: ConfigWriter) -> None:
    path = write_config(embedder={"type": "sentence_transformers", "quantize": "int8"})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    report = str(caught.value)
    assert "embedder.quantize" in report and "needs backend: onnx" in report
    assert "app.yaml:" in report


def test_app_with_onnx_int8_ingests_and_answers(
    write_config: ConfigWriter, cache: Path, int8: Embedder
) -> None:
    embedder = {
        "type": "sentence_transformers",
        "backend": "onnx",
        "quantize": "int8",
        "onnx_cache": str(cache),
    }
    with RAG.from_config(write_config(embedder=embedder)) as rag:
        report = rag.ingest()
        answer = rag.query("How do I restore a backup?", top_k=3)
    assert report.chunks_embedded > 0 and report.token_limit == 256
    assert answer.sources[0].source == "docs/backup.md"
    assert "restore" in answer.answer.lower()
    assert len(list(cache.iterdir())) == 2  # the app reused the module's int8 export
