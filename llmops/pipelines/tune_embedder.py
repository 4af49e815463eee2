"""Tuning from labels with a fine-tuned embedder: ``llmops eval retrieval --tune
--train-embedder DIR``.

Three quarters of the tuning queries fine-tune the app's sentence-transformers embedder
(``llmops.rag.embedders.training``); the corpus is indexed again with it, and on the other
quarter, which that training never saw, ``tune`` decides whether the fine-tuned embedder is
used and picks the setting. When it is used, the embedder is fine-tuned once more, on every
tuning query, saved in ``DIR``, and the corpus indexed with it for the comparison with the
app's setting on the test queries, which neither training nor choice saw.

Fine-tuned indexes live in temporary folders: an index is keyed by the model's folder name,
not its weights, so one kept in a work folder would outlive the model it was built with.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from llmops.build import AppSpec
from llmops.errors import InvalidRequest
from llmops.pipelines.eval_retrieval import Progress, indexed
from llmops.pipelines.tune_retrieval import (
    BeirTuning,
    Labelled,
    Lists,
    Qrels,
    TunedEmbedder,
    TuneReport,
    collect,
    compare,
    labelled,
    needs_sparse,
    part,
    tune,
)
from llmops.rag.embedders.sentence_transformers import SentenceTransformerEmbedder
from llmops.rag.embedders.training import EmbedderTraining, fine_tune

SELECT = 1 / 4
"""The share of the tuning queries kept out of the first fine-tuning: the choice is made on
them."""


@dataclass(frozen=True)
class EmbedderTuning:
    """Fine-tune the app's embedder with ``training``; the chosen model is saved in ``out``."""

    out: Path
    training: EmbedderTraining = field(default_factory=EmbedderTraining)


def tune_beir_with_embedder(
    source: BeirTuning, embedder: EmbedderTuning, progress: Progress | None = None
) -> TuneReport:
    """``tune_beir`` with a fine-tuned embedder among the choices (see the module docstring);
    ``source.workdir`` keeps the index of the app's own embedder only."""
    notify = progress or (lambda stage, done, total: None)
    data = labelled(source, notify, trainable)
    config = source.config
    base = data.spec.loaded.app.retrieval
    fit, select = part(data.tune_qrels, SELECT)
    texts = _relevant_texts(data)
    with tempfile.TemporaryDirectory(prefix="llmops-embedder-") as scratch:
        model = _fine_tune(data, texts, fit, embedder.training, Path(scratch) / "model", notify)
        lists = _rankings(data, config, model, notify)
        trained = TunedEmbedder(lists, _section(data.spec, model))
        names = (
            f"{data.names[0].split(' ', 1)[0]} ({len(fit)} queries fine-tuned the embedder, "
            f"the other {len(select)} chose it and the setting)",
            data.names[1],
        )
        report = tune(base, data.lists, (select, data.test_qrels), names, embedder=trained)
    if report.embedder_section is None:
        return report
    out = embedder.out.resolve()
    model = _fine_tune(data, texts, data.tune_qrels, embedder.training, out, notify)
    final = _rankings(data, config, model, notify)
    comparison = compare(base, data.lists, report.chosen, final, data.test_qrels)
    return replace(report, comparison=comparison, embedder_section=_section(data.spec, model))


def trainable(spec: AppSpec) -> None:
    """Fine-tuning needs a sentence-transformers embedder (and tuning, BM25)."""
    needs_sparse(spec)
    embedder = spec.components["embedder"]
    if embedder.entry.name != "sentence_transformers":
        raise InvalidRequest(
            f"--train-embedder fine-tunes a sentence_transformers embedder; "
            f"{spec.loaded.file} uses '{embedder.entry.name}'"
        )


def _relevant_texts(data: Labelled) -> dict[str, str]:
    """The text of every document a tuning query is labelled relevant to (one corpus read)."""
    judged = data.tune_qrels.values()
    wanted = {doc for docs in judged for doc, grade in docs.items() if grade > 0}
    return {d.id: d.full_text for d in data.beir.documents() if d.id in wanted}


def _fine_tune(
    data: Labelled,
    texts: Mapping[str, str],
    qrels: Qrels,
    training: EmbedderTraining,
    out: Path,
    notify: Progress,
) -> Path:
    """The app's embedder fine-tuned on ``qrels``' (question, relevant document) pairs, the
    documents' ``texts`` read by ``_relevant_texts``."""
    config = data.spec.components["embedder"].config
    assert isinstance(config, SentenceTransformerEmbedder.Config)  # see ``trainable``
    app_embedder = SentenceTransformerEmbedder(config, base_dir=data.spec.base_dir)
    pairs = [
        (data.queries[q], texts[doc])
        for q, judged in qrels.items()
        for doc, grade in judged.items()
        if grade > 0 and doc in texts
    ]
    stage = f"fine-tune embedder on {len(qrels)} queries"
    notify(stage, 0, 1)
    location = app_embedder.model_location()
    trained = fine_tune(location, pairs, out, training, app_embedder.config.max_seq_length)
    notify(stage, 1, 1)
    return trained


def _rankings(
    data: Labelled, config: str | Path | None, model: Path, notify: Progress
) -> Mapping[str, Lists]:
    """Every query's rankings on the corpus indexed (in a temporary folder) by the app of
    ``config`` with ``model`` as its embedder."""
    with indexed(data.beir, config, notify, needs_sparse, None, str(model)) as index:
        return asyncio.run(collect(index.pipeline, data.queries, notify))


def _section(spec: AppSpec, model: Path) -> dict[str, object]:
    """The app's ``embedder:`` section with ``model`` as its model."""
    return {**spec.loaded.app.embedder.model_dump(mode="json"), "model": str(model)}
