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


Qrels = dict[str, dict[str, int]]

DocumentId = Callable[[ScoredChunk], str]
"""The id of a hit's document as the labels name it (chunks of one document share it)."""


APP_EMBEDDER = "app"
TUNED_EMBEDDER = "fine-tuned"


@dataclass(frozen=True)
class Candidate:
    """A setting, and whose rankings it fuses: the app's embedder's or the fine-tuned one's."""

    setting: RetrievalConfig
    embedder: str = APP_EMBEDDER


def candidates(base: RetrievalConfig, embedder: str = APP_EMBEDDER) -> list[Candidate]:
    """The grid of settings on ``embedder``'s rankings; the app's own setting first."""
    return [Candidate(setting, embedder) for setting in settings_grid(base)]


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
    settings: dict[str, Any]  # with "embedder" when it fuses the fine-tuned embedder's rankings
    score: float  # mean METRIC on the tuning queries


@dataclass(frozen=True)
class TunedEmbedder:
    """The embedder fine-tuned on the tuning queries: its rankings of every query, and the
    ``embedder:`` section that uses it."""

    lists: Mapping[str, Lists]
    section: dict[str, Any]


@dataclass
class TuneReport:
    """What tuning chose, and how it does against the app's setting on unseen queries."""

    chosen: RetrievalConfig
    yaml_section: dict[str, Any]  # the app's retrieval section with the chosen settings
    embedder_section: dict[str, Any] | None  # the fine-tuned embedder, when it was chosen
    comparison: Comparison  # A: the app's setting, B: the chosen one, on the held-out queries
    tuning_gain: Comparison  # A: the app's setting (on the chosen embedder), B: the best trial
    tuned_on: str  # e.g. "train (809 queries)"
    evaluated_on: str
    trials: list[Trial] = field(default_factory=list)  # best first
    # A: the app's embedder, B: the fine-tuned one, both with the app's setting, on the
    # tuning queries (None without a fine-tuned embedder)
    embedder_gain: Comparison | None = None


def pick(
    grid: Sequence[Candidate],
    rankings: Mapping[str, Mapping[str, Lists]],
    qrels: Mapping[str, Mapping[str, int]],
    doc_id: DocumentId = document_id,
) -> tuple[Candidate, list[Trial], Comparison]:
    """The candidate with the best mean METRIC on ``qrels``' queries (the first on a tie),
    every trial, and that candidate against the app's own (``grid[0]``) on these queries;
    ``rankings``: each embedder's lists of every query.

    The best replaces the app's setting only when it beats it significantly there (paired
    permutation test): among a few hundred settings one always looks a little better on the
    tuning queries by chance, and moving off the config for such a gain loses on new queries
    as often as it wins."""
    values = [score(c.setting, rankings[c.embedder], qrels, doc_id) for c in grid]
    means = [sum(v.values()) / len(v) for v in values]
    best = max(range(len(grid)), key=means.__getitem__)  # max keeps the first of equals
    order = list(qrels)
    gain = paired([values[0][q] for q in order], [values[best][q] for q in order])
    chosen = grid[best] if gain.significant and gain.diff > 0 else grid[0]
    ranked = sorted(range(len(grid)), key=lambda i: -means[i])
    return chosen, [Trial(_trial_settings(grid[i]), means[i]) for i in ranked], gain


def _trial_settings(candidate: Candidate) -> dict[str, Any]:
    settings = tuned(candidate.setting)
    if candidate.embedder != APP_EMBEDDER:
        settings["embedder"] = candidate.embedder
    return settings


@dataclass(frozen=True)
class Labelled:
    """A BEIR folder's queries, split for tuning, and every query's rankings by the app."""

    beir: BeirFolder
    spec: AppSpec  # the app as evaluated (its sources replaced by the corpus)
    lists: dict[str, Lists]
    tune_qrels: Qrels
    test_qrels: Qrels
    queries: dict[str, str]
    names: tuple[str, str]


@dataclass(frozen=True)
class BeirTuning:
    """What tuning on a BEIR folder reads: the ``split`` queries to tune on, the
    ``test_split`` queries to test the choice on (when the folder has that other split; else
    a held-out third of ``split``), the first ``limit`` judged queries only, and the app of
    ``config`` with its index in ``workdir``, as for ``evaluate_beir`` (it needs a
    ``sparse:`` section)."""

    folder: str | Path
    config: str | Path | None = None
    split: str = "train"
    test_split: str = "test"
    limit: int | None = None
    workdir: str | Path | None = None


def tune_beir(
    folder: str | Path,
    config: str | Path | None = None,
    split: str = "train",
    limit: int | None = None,
    progress: Progress | None = None,
    workdir: str | Path | None = None,
) -> TuneReport:
    """Tune retrieval on a BEIR folder's labelled queries (see ``BeirTuning``)."""
    data = labelled(BeirTuning(folder, config, split, limit=limit, workdir=workdir), progress)
    base = data.spec.loaded.app.retrieval
    return tune(base, data.lists, (data.tune_qrels, data.test_qrels), data.names)


def labelled(
    source: BeirTuning,
    progress: Progress | None,
    check: Callable[[AppSpec], None] | None = None,
) -> Labelled:
    """``source``'s tuning and test queries, searched on the app's index of its corpus;
    ``check`` vets the app first (default: ``needs_sparse``)."""
    folder = Path(source.folder)
    splits = _splits(folder, source.split, source.test_split, source.limit)
    tune_qrels, test_qrels, queries, names = splits
    notify = progress or (lambda stage, done, total: None)
    beir = BeirFolder.open(folder, source.split)
    with indexed(beir, source.config, notify, check or needs_sparse, source.workdir) as index:
        lists = asyncio.run(collect(index.pipeline, queries, notify))
        spec = index.spec
    return Labelled(beir, spec, lists, tune_qrels, test_qrels, queries, names)


def tune(
    base: RetrievalConfig,
    lists: Mapping[str, Lists],
    qrels: tuple[Qrels, Qrels],
    names: tuple[str, str],
    doc_id: DocumentId = document_id,
    embedder: TunedEmbedder | None = None,
) -> TuneReport:
    """Pick a setting on the first ``qrels`` (tuning) and compare it with ``base`` on the
    second (held out); ``names`` describe the two sets of queries.

    With a fine-tuned ``embedder`` (which must not have been trained on either set), the
    embedder is decided first, by one comparison: its rankings against the app's, both under
    the app's setting, on the tuning queries; the fine-tuned one is used when it does better
    there. (One comparison asked for up front has no winner's curse to guard against, unlike
    the best of the grid below.) The setting is then picked on that embedder's rankings."""
    tune_qrels, test_qrels = qrels
    rankings = {APP_EMBEDDER: lists}
    start, embedder_gain = APP_EMBEDDER, None
    if embedder is not None:
        rankings[TUNED_EMBEDDER] = embedder.lists
        embedder_gain = compare(base, lists, base, embedder.lists, tune_qrels, doc_id)
        start = TUNED_EMBEDDER if embedder_gain.diff > 0 else APP_EMBEDDER
    chosen, trials, tuning_gain = pick(candidates(base, start), rankings, tune_qrels, doc_id)
    after = rankings[chosen.embedder]
    comparison = compare(base, lists, chosen.setting, after, test_qrels, doc_id)
    section = {**base.model_dump(mode="json", by_alias=True, exclude_defaults=True)}
    section.update(tuned(chosen.setting))
    chosen_embedder = embedder.section if embedder and chosen.embedder != APP_EMBEDDER else None
    return TuneReport(
        chosen.setting,
        section,
        chosen_embedder,
        comparison,
        tuning_gain,
        *names,
        trials,
        embedder_gain,
    )


def compare(
    base: RetrievalConfig,
    lists: Mapping[str, Lists],
    chosen: RetrievalConfig,
    chosen_lists: Mapping[str, Lists],
    qrels: Qrels,
    doc_id: DocumentId = document_id,
) -> Comparison:
    """The app's setting on its lists (A) against the chosen one on its lists (B), on
    ``qrels``' queries."""
    before = score(base, lists, qrels, doc_id)
    after = score(chosen, chosen_lists, qrels, doc_id)
    order = list(qrels)
    return paired([before[q] for q in order], [after[q] for q in order])


def part(qrels: Qrels, share: float) -> tuple[Qrels, Qrels]:
    """``qrels`` cut into the rest and a seeded random ``share`` (at least one query)."""
    order = sorted(qrels)
    random.Random(SEED).shuffle(order)
    held = set(order[: max(1, round(len(order) * share))])
    rest = {q: r for q, r in qrels.items() if q not in held}
    return rest, {q: r for q, r in qrels.items() if q in held}


def hold_out(qrels: Qrels, split: str) -> tuple[Qrels, Qrels, tuple[str, str]]:
    """``qrels`` cut into queries to tune on and a held-out ``HOLDOUT`` share (seeded), and
    how each part is described."""
    tune_qrels, test_qrels = part(qrels, HOLDOUT)
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


def write_sections(config: Path, sections: Mapping[str, Mapping[str, Any]]) -> None:
    """Replace the ``retrieval:`` (and ``embedder:``) sections of the YAML app config
    ``config`` with ``sections``', keeping the rest of the file's settings (its comments are
    not kept)."""
    RetrievalConfig.model_validate(sections["retrieval"])
    try:
        document = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidRequest(f"{config}: cannot read the config to write into: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidRequest(f"{config}: not an app config (a YAML mapping); nothing written")
    document.update({name: dict(section) for name, section in sections.items()})
    config.write_text(dump_yaml([document]), encoding="utf-8")


def chosen_sections(report: TuneReport) -> dict[str, dict[str, Any]]:
    """The sections tuning chose: ``retrieval``, and ``embedder`` when the fine-tuned one won."""
    sections = {"retrieval": report.yaml_section}
    if report.embedder_section is not None:
        sections["embedder"] = report.embedder_section
    return sections
