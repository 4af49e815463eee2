"""Scorers beyond the plain metrics, made for a suite: ragas' non-LLM context metrics and the
LLM-judged ragas metrics, with the suite's judge built from its generator section."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from llmops.build import Components, check_component, make_generator
from llmops.errors import ConfigError
from llmops.evaluation.datasets import Sample
from llmops.evaluation.scoring import Scores
from llmops.evaluation.suite import JUDGED, RAGAS_NON_LLM, LoadedSuite
from llmops.types import Answer, ScoredChunk

JUDGE_CACHE = "judge-cache.sqlite"  # in the app's data_dir


class ExtraScorer(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    async def score(
        self, sample: Sample, answer: Answer, hits: Sequence[ScoredChunk]
    ) -> Scores: ...


def make_scorers(loaded: LoadedSuite, components: Components) -> list[ExtraScorer]:
    spec = loaded.spec
    if not any(m in (*RAGAS_NON_LLM, *JUDGED) for m in spec.metrics):
        return []
    from llmops.evaluation.judge import Judge, JudgeCache, RagasScorer

    judge = None
    if spec.judge is not None:
        resolved, issues = check_component(
            "generator", spec.judge, ("judge",), loaded.source_map, loaded.file
        )
        if resolved is None:
            raise ConfigError(issues)
        model = getattr(resolved.config, "model", None) or resolved.entry.name
        cache = JudgeCache(components.data_dir / JUDGE_CACHE)
        judge = Judge(make_generator(resolved, loaded.base_dir), str(model), cache)
    return [RagasScorer(spec.metrics, judge, components.embedder.embed_documents)]
