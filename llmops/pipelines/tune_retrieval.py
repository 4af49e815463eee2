"""Tuning retrieval from labelled queries: which mode, fusion, fusion weight and candidate depth
rank a BEIR folder's judged queries best.

Every judged query is searched once per retriever (dense and BM25, ``MAX_CANDIDATES`` deep)
on the app's own index; each candidate setting is then scored by re-fusing those lists in
memory with the searcher's own ``fuse_hybrid``, so a grid of settings costs one retrieval pass.
The best setting on the tuning queries replaces the app's current one only when it beats it
significantly there; the choice is then compared with the app's setting on queries it was not
tuned on (the test split, or a held-out part of the split), with a bootstrap CI.

    tune_beir("datasets/scifact", split="train").yaml -> "retrieval:\\n  fusion: rrf\\n ..."
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmops.build import AppSpec
from llmops.config.schema import RetrievalConfig
from llmops.config.yaml_source import dump_yaml
from llmops.errors import InvalidRequest
from llmops.evaluation.beir import BeirFolder
from llmops.evaluation.retrieval_metrics import per_query
from llmops.evaluation.stats import Comparison, paired
from llmops.pipelines.eval_retrieval import (
    DEPTH,
    Progress,
    document_id,
    indexed,
    judged_split,
)
from llmops.pipelines.query import QueryOptions, QueryPipeline
from llmops.rag.fusion import FusionSettings, fuse_hybrid
from llmops.types import ScoredChunk

METRIC = "ndcg@10"
MAX_CANDIDATES = 200  # the deepest candidate list a setting may fuse
CANDIDATE_DEPTHS = (25, 50, 100, 200)
RRF_KS = (10, 30, 60, 100)
DENSE_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
HOLDOUT = 1 / 3  # share of the split held out when there is no other split to test on
SEED = 0
FUSION_FIELDS = {"rrf": ["rrf_k"], "weighted": ["dense_weight"], "adaptive": ["dense_weight"]}
"""The settings each fusion reads, besides ``candidates``."""


@dataclass(frozen=True)
class Lists:
    """One query's dense and BM25 rankings, ``MAX_CANDIDATES`` deep."""

    dense: list[ScoredChunk]
    sparse: list[ScoredChunk]


def _dense(lists: Lists, setting: RetrievalConfig) -> list[ScoredChunk]:
    return lists.dense[:DEPTH]


def _sparse(lists: Lists, setting: RetrievalConfig) -> list[ScoredChunk]:
    return lists.sparse[:DEPTH]


def _hybrid(lists: Lists, setting: RetrievalConfig) -> list[ScoredChunk]:
    # each path contributes what the searcher would fetch for the app's top_k
    depth = max(setting.candidates, setting.top_k)
    fusion = FusionSettings(setting.fusion, setting.rrf_k, setting.dense_weight)
    return fuse_hybrid(lists.dense[:depth], lists.sparse[:depth], DEPTH, fusion)


RANKERS: dict[str, Callable[[Lists, RetrievalConfig], list[ScoredChunk]]] = {
    "dense": _dense,
    "sparse": _sparse,
    "hybrid": _hybrid,
}
"""``retrieval.mode`` → the ranking a setting makes from one query's cached lists."""


def settings_grid(base: RetrievalConfig) -> list[RetrievalConfig]:
    """``base`` first, then every setting tuning tries (each a copy of ``base`` with its
    tuned fields changed): dense, BM25, and hybrid with each fusion and candidate depth."""
    changes: list[dict[str, Any]] = [{"mode": "dense"}, {"mode": "sparse"}]
    for candidates in CANDIDATE_DEPTHS:
        hybrid = {"mode": "hybrid", "candidates": candidates}
        changes += [{**hybrid, "fusion": "adaptive", "dense_weight": w} for w in DENSE_WEIGHTS]
        changes += [{**hybrid, "fusion": "rrf", "rrf_k": k} for k in RRF_KS]
        changes += [{**hybrid, "fusion": "weighted", "dense_weight": w} for w in DENSE_WEIGHTS]
    return [base, *(base.model_copy(update=c) for c in changes)]


def tuned(setting: RetrievalConfig) -> dict[str, Any]:
    """The tuned fields that matter for ``setting``'s mode and fusion."""
    names = ["mode"]
    if setting.mode == "hybrid":
        names += ["fusion", *FUSION_FIELDS[setting.fusion], "candidates"]
    return setting.model_dump(include=set(names))


DocumentId = Callable[[ScoredChunk], str]
"""The id of a hit's document as the labels name it (chunks of one document share it)."""


def score(
    setting: RetrievalConfig,
    lists: Mapping[str, Lists],
    qrels: Mapping[str, Mapping[str, int]],
    doc_id: DocumentId = document_id,
) -> dict[str, float]:
    """``{query id: METRIC}`` of ``setting`` on the cached lists of ``qrels``' queries."""
    rank = RANKERS[setting.mode]
    run = {qid: list(dict.fromkeys(map(doc_id, rank(lists[qid], setting)))) for qid in qrels}
    return {qid: values[METRIC] for qid, values in per_query(run, qrels, [METRIC]).items()}


@dataclass(frozen=True)
class Trial:
    settings: dict[str, Any]
    score: float  # mean METRIC on the tuning queries


@dataclass
class TuneReport:
    """What tuning chose, and how it does against the app's setting on unseen queries."""

    chosen: RetrievalConfig
    yaml_section: dict[str, Any]  # the app's retrieval section with the chosen settings
    comparison: Comparison  # A: the app's setting, B: the chosen one, on the held-out queries
    tuning_gain: Comparison  # A: the app's setting, B: the best trial, on the tuning queries
    tuned_on: str  # e.g. "train (809 queries)"
    evaluated_on: str
    trials: list[Trial] = field(default_factory=list)  # best first


def pick(
    grid: Sequence[RetrievalConfig],
    lists: Mapping[str, Lists],
    qrels: Mapping[str, Mapping[str, int]],
    doc_id: DocumentId = document_id,
) -> tuple[RetrievalConfig, list[Trial], Comparison]:
    """The setting with the best mean METRIC on ``qrels``' queries (the first on a tie), every
    trial, and that setting against the app's own (``grid[0]``) on these queries.

    The best replaces the app's setting only when it beats it significantly there (paired
    permutation test): among a few hundred settings one always looks a little better on the
    tuning queries by chance, and moving off the config for such a gain loses on new queries
    as often as it wins."""
    values = [score(setting, lists, qrels, doc_id) for setting in grid]
    means = [sum(v.values()) / len(v) for v in values]
    best = max(range(len(grid)), key=means.__getitem__)  # max keeps the first of equals
    order = list(qrels)
    gain = paired([values[0][q] for q in order], [values[best][q] for q in order])
    chosen = grid[best] if gain.significant and gain.diff > 0 else grid[0]
    ranked = sorted(range(len(grid)), key=lambda i: -means[i])
    return chosen, [Trial(tuned(grid[i]), means[i]) for i in ranked], gain


def tune_beir(
    folder: str | Path,
    config: str | Path | None = None,
    split: str = "train",
    test_split: str = "test",
    limit: int | None = None,
    progress: Progress | None = None,
    workdir: str | Path | None = None,
) -> TuneReport:
    """Tune retrieval on the ``split`` queries of a BEIR folder and test the choice on the
    ``test_split`` queries (when that is another split the folder has), else on a held-out
    third of ``split``. ``config`` and ``workdir``: the app whose index and retrieval settings
    are used, and where the index lives, as for ``evaluate_beir``; it needs a ``sparse:``
    section."""
    tune_qrels, test_qrels, queries, names = _splits(Path(folder), split, test_split, limit)
    notify = progress or (lambda stage, done, total: None)
    beir = BeirFolder.open(folder, split)
    with indexed(beir, config, notify, needs_sparse, workdir) as index:
        lists = asyncio.run(collect(index.pipeline, queries, notify))
        base = index.spec.loaded.app.retrieval
    return tune(base, lists, (tune_qrels, test_qrels), names)


Qrels = dict[str, dict[str, int]]


def tune(
    base: RetrievalConfig,
    lists: Mapping[str, Lists],
    qrels: tuple[Qrels, Qrels],
    names: tuple[str, str],
    doc_id: DocumentId = document_id,
) -> TuneReport:
    """Pick a setting on the first ``qrels`` (tuning) and compare it with ``base`` on the
    second (held out); ``names`` describe the two sets of queries."""
    tune_qrels, test_qrels = qrels
    chosen, trials, tuning_gain = pick(settings_grid(base), lists, tune_qrels, doc_id)
    before = score(base, lists, test_qrels, doc_id)
    after = score(chosen, lists, test_qrels, doc_id)
    order = list(test_qrels)
    comparison = paired([before[q] for q in order], [after[q] for q in order])
    section = {**base.model_dump(mode="json", by_alias=True, exclude_defaults=True)}
    section.update(tuned(chosen))
    return TuneReport(chosen, section, comparison, tuning_gain, *names, trials)


def hold_out(qrels: Qrels, split: str) -> tuple[Qrels, Qrels, tuple[str, str]]:
    """``qrels`` cut into queries to tune on and a held-out ``HOLDOUT`` share (seeded), and
    how each part is described."""
    order = sorted(qrels)
    random.Random(SEED).shuffle(order)
    held = set(order[: max(1, round(len(order) * HOLDOUT))])
    test_qrels = {q: r for q, r in qrels.items() if q in held}
    tune_qrels = {q: r for q, r in qrels.items() if q not in held}
    names = (
        f"{split}, {len(tune_qrels)} queries",
        f"{split}, the {len(test_qrels)} other queries (held out)",
    )
    return tune_qrels, test_qrels, names


def needs_sparse(spec: AppSpec) -> None:
    if "sparse" not in spec.components:
        raise InvalidRequest(
            f"tuning compares dense, BM25 and hybrid search: add a 'sparse: {{type: bm25}}' "
            f"section to {spec.loaded.file}"
        )


def _splits(
    folder: Path, split: str, test_split: str, limit: int | None
) -> tuple[Qrels, Qrels, dict[str, str], tuple[str, str]]:
    """Tuning qrels, held-out qrels, every query's text, and how each set is described."""
    tune_qrels, queries = judged_split(BeirFolder.open(folder, split), limit)
    if test_split != split and (folder / "qrels" / f"{test_split}.tsv").is_file():
        test_qrels, test_queries = judged_split(BeirFolder.open(folder, test_split), limit)
        queries = {**queries, **test_queries}
        tune_qrels = {q: r for q, r in tune_qrels.items() if q not in test_qrels}
        names = (f"{split} ({len(tune_qrels)} queries)", f"{test_split} ({len(test_qrels)})")
    else:
        tune_qrels, test_qrels, names = hold_out(tune_qrels, split)
    if not tune_qrels:
        raise InvalidRequest(
            f"{folder}: no judged query of '{split}' is left to tune on; "
            f"pick another split with --split"
        )
    return tune_qrels, test_qrels, queries, names


async def collect(
    pipeline: QueryPipeline, queries: Mapping[str, str], notify: Progress
) -> dict[str, Lists]:
    """Each query's dense and BM25 rankings, ``MAX_CANDIDATES`` deep: one search per
    retriever, the candidates every setting is scored on."""
    lists: dict[str, Lists] = {}
    paths = {
        mode: QueryOptions(top_k=MAX_CANDIDATES, mode=mode, rerank=False, mmr=False)
        for mode in ("dense", "sparse")
    }
    notify("retrieve", 0, len(queries))
    for done, (qid, text) in enumerate(queries.items(), 1):
        dense = await pipeline.search(text, paths["dense"])
        sparse = await pipeline.search(text, paths["sparse"])
        lists[qid] = Lists(dense, sparse)
        notify("retrieve", done, len(queries))
    return lists


def write_section(config: Path, section: Mapping[str, Any]) -> None:
    """Replace the ``retrieval:`` section of the YAML app config ``config`` with ``section``,
    keeping the rest of the file's settings (its comments are not kept)."""
    RetrievalConfig.model_validate(section)
    try:
        document = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidRequest(f"{config}: cannot read the config to write into: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidRequest(f"{config}: not an app config (a YAML mapping); nothing written")
    document["retrieval"] = dict(section)
    config.write_text(dump_yaml([document]), encoding="utf-8")
