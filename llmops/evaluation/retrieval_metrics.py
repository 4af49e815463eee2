"""Ranking metrics over a retrieval run, with trec_eval's definitions (as BEIR reports them).

A *run* maps each query id to its ranked document ids (best first); *qrels* map each query id
to ``{document id: relevance}``. Relevance above 0 is relevant; 0 or below is not.

- ``ndcg@k`` (trec_eval ``ndcg_cut.k``): DCG over the first k results, with the relevance
  itself as gain (graded, not ``2**rel - 1``) and a ``log2(rank + 1)`` discount, divided by
  the DCG of the qrels' own relevance values sorted best first and cut at k.
- ``recall@k`` (``recall.k``): relevant documents in the first k / all relevant documents.
- ``mrr@k`` (``recip_rank``, cut at k): 1 / rank of the first relevant document in the first k,
  else 0.
- ``precision@k`` (``P.k``): relevant documents in the first k / k.
- ``hit@k`` (``success.k``): 1 if a relevant document is in the first k, else 0.

Queries whose qrels hold no relevant document are skipped (trec_eval and BEIR do the same: no
score is defined for them); a judged query missing from the run scores 0 on every metric. A
document repeated in a ranking counts once, at its first (best) rank.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

Run = Mapping[str, Sequence[str]]
Qrels = Mapping[str, Mapping[str, int]]
DEFAULT_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
_NAME = re.compile(r"([a-z]+)@(\d+)")


def ndcg(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    gains = sorted((rel for rel in judged.values() if rel > 0), reverse=True)[:k]
    ideal = _dcg(gains)
    if ideal == 0:
        return 0.0
    return _dcg([max(judged.get(doc, 0), 0) for doc in ranking[:k]]) / ideal


def recall(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    relevant = {doc for doc, rel in judged.items() if rel > 0}
    return len(relevant.intersection(ranking[:k])) / len(relevant) if relevant else 0.0


def mrr(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    for rank, doc in enumerate(ranking[:k], 1):
        if judged.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def precision(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    return sum(1 for doc in ranking[:k] if judged.get(doc, 0) > 0) / k


def hit(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """1 if any relevant document is among the first k (success@k), else 0."""
    return float(any(judged.get(doc, 0) > 0 for doc in ranking[:k]))


def _dcg(gains: Iterable[int]) -> float:
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, 1))


MetricFn = Callable[[Sequence[str], Mapping[str, int], int], float]
METRICS: dict[str, MetricFn] = {
    "ndcg": ndcg,
    "recall": recall,
    "mrr": mrr,
    "precision": precision,
    "hit": hit,
}


@dataclass(frozen=True)
class Metric:
    """A parsed metric name such as ``ndcg@10``."""

    name: str
    fn: MetricFn
    k: int

    def __call__(self, ranking: Sequence[str], judged: Mapping[str, int]) -> float:
        return self.fn(ranking, judged, self.k)


def parse_metric(name: str) -> Metric:
    """``"nDCG@10"`` → the nDCG function cut at 10; ValueError names the allowed forms."""
    match = _NAME.fullmatch(name.strip().lower())
    if not match or match.group(1) not in METRICS or int(match.group(2)) < 1:
        allowed = ", ".join(f"{m}@k" for m in METRICS)
        raise ValueError(f"unknown metric '{name}'; allowed: {allowed} (k >= 1, e.g. ndcg@10)")
    return Metric(match.group(0), METRICS[match.group(1)], int(match.group(2)))


def judged_queries(qrels: Qrels) -> list[str]:
    """The query ids that have at least one relevant document, in qrels order."""
    return [qid for qid, judged in qrels.items() if any(rel > 0 for rel in judged.values())]


def per_query(
    run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS
) -> dict[str, dict[str, float]]:
    """``{query id: {metric: value}}`` for every query with a relevant document in ``qrels``."""
    parsed = [parse_metric(m) for m in metrics]
    scores = {}
    for qid in judged_queries(qrels):
        ranking = list(dict.fromkeys(run.get(qid, ())))  # first occurrence = best rank
        scores[qid] = {m.name: m(ranking, qrels[qid]) for m in parsed}
    return scores


def mean(scores: Mapping[str, Mapping[str, float]], metrics: Sequence[str]) -> dict[str, float]:
    """The mean of each metric over the queries of ``per_query``'s answer."""
    names = [parse_metric(m).name for m in metrics]
    if not scores:
        raise ValueError("no query in the qrels has a relevant document: nothing to average")
    return {name: sum(q[name] for q in scores.values()) / len(scores) for name in names}


def evaluate(run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the judged queries (see the module docstring)."""
    return mean(per_query(run, qrels, metrics), metrics)
