"""One answered sample and its scores: what the runner writes per line, and how it is scored.

A metric that does not apply to a sample is None and is left out of the means: retrieval
metrics need reference ids, answer metrics need reference answers (answerable questions);
abstention accuracy applies to every sample.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from llmops.evaluation import answer_metrics
from llmops.evaluation.answer_metrics import TEXT_METRICS, Embed
from llmops.evaluation.datasets import Sample
from llmops.evaluation.retrieval_metrics import parse_metric
from llmops.evaluation.suite import known_metric

Scores = dict[str, float | None]


@dataclass
class SampleResult:
    """A sample as the app answered it (one line of ``samples-<variant>.jsonl``)."""

    id: str
    question: str
    answerable: bool
    answer: str = ""
    abstained: bool = False
    retrieved_ids: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    scores: Scores = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleResult:
        return cls(**data)

    def value(self, metric: str) -> float | None:
        """A score or an operational figure by name (None: not applicable or failed)."""
        if metric in self.scores:
            return self.scores[metric]
        if self.error is None and metric in ("latency_ms", "prompt_tokens", "completion_tokens"):
            return float(getattr(self, metric))
        if metric == "cost_usd":
            return self.cost_usd
        return None


def ranking_ids(document_ids: Sequence[str]) -> list[str]:
    """Chunk document ids, best first, collapsed to documents at their best rank."""
    return list(dict.fromkeys(document_ids))


@dataclass(frozen=True)
class Answered:
    """One answered sample, as the per-sample metrics see it."""

    sample: Sample
    answer: str
    abstained: bool
    retrieved: Sequence[str]
    embed: Embed | None = None

    @property
    def references(self) -> Sequence[str]:
        """The reference answers (none for an unanswerable question)."""
        return self.sample.answers if self.sample.answerable else ()


SampleMetric = Callable[[Answered], float | None]
"""A per-sample metric: None when it does not apply to the sample."""


def _abstention(a: Answered) -> float:
    return answer_metrics.abstention_correct(a.abstained, a.sample.answerable)


def _semantic(a: Answered) -> float | None:
    if a.embed is None:
        return None
    return answer_metrics.semantic_similarity(a.answer, a.references, a.embed)


def _text(name: str) -> SampleMetric:
    return lambda a: answer_metrics.best_of(name, a.answer, a.references)


def _retrieval(name: str) -> SampleMetric:
    metric = parse_metric(name)

    def score(a: Answered) -> float | None:
        judged = {doc: 1 for doc in a.sample.context_ids}
        return metric(a.retrieved, judged) if judged else None

    return score


_ANSWER_METRICS: dict[str, SampleMetric] = {
    "abstention_accuracy": _abstention,
    "semantic_similarity": _semantic,
    **{name: _text(name) for name in TEXT_METRICS},
}


@functools.cache
def sample_metric(name: str) -> SampleMetric | None:
    """The per-sample scorer of ``name`` (an answer metric, or a ranking one such as
    ``ndcg@10``); None for the metrics scored elsewhere (ragas, judged)."""
    if name in _ANSWER_METRICS:
        return _ANSWER_METRICS[name]
    return _retrieval(name) if "@" in name and known_metric(name) else None


def score_sample(
    sample: Sample,
    answer: str,
    abstained: bool,
    retrieved: Sequence[str],
    metrics: Sequence[str],
    embed: Embed | None = None,
) -> Scores:
    """The retrieval and answer metrics among ``metrics`` (ragas and judged ones are scored
    elsewhere and are skipped here)."""
    answered = Answered(sample, answer, abstained, retrieved, embed)
    return {
        name: scorer(answered) for name in metrics if (scorer := sample_metric(name)) is not None
    }
