"""Eval runs answered on Ray: actors each build the app from the suite's config once (reading
the index the driver keeps up to date, never writing it) and answer a share of a variant's
questions; the driver scores, writes, logs and gates exactly as an in-process run does.

    run_suite("eval/quickstart.yaml", answering=answering_for(EvalEngine.RAY, suite, "auto"))
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from llmops.build import build
from llmops.errors import LLMOpsError
from llmops.evaluation.datasets import Sample
from llmops.pipelines.eval_answering import Answering, Ask, InProcess
from llmops.pipelines.eval_run import build_variants, load_checked_suite
from llmops.pipelines.query import QueryOptions, QueryPipeline
from llmops.ray_cluster import connect
from llmops.types import Answer, ScoredChunk

Answered = tuple[tuple[Answer, Sequence[ScoredChunk]] | None, str | None]
"""A question's answer and hits, or the error that stopped it."""


class EvalEngine(StrEnum):
    """The engines ``llmops eval run --engine`` offers."""

    LOCAL = "local"
    RAY = "ray"


class _Answerer:
    """One Ray actor (an async one: Ray runs its methods on its own event loop): the suite's
    app and variants, built once; the generators start on the first question."""

    def __init__(self, suite: str) -> None:
        loaded, app_spec = load_checked_suite(suite)
        self.components = build(app_spec)
        self.components.start()
        variants = build_variants(loaded, app_spec, self.components)
        self.pipelines = {v.name: v.pipeline for v in variants}
        self.started = False

    async def answer(self, variant: str, questions: list[str]) -> list[Answered]:
        if not self.started:
            pipelines = self.pipelines.values()
            for generator in {id(p.generator): p.generator for p in pipelines}.values():
                await generator.start()
            self.started = True
        pipeline = self.pipelines[variant]
        answered: list[Answered] = []
        for question in questions:
            try:
                answered.append((await pipeline.run_with_context(question, QueryOptions()), None))
            except LLMOpsError as exc:  # the driver records it as the in-process run does
                answered.append((None, str(exc)))
        return answered


class RayAnswering:
    """Answers on actors of the Ray cluster at ``address``: one per CPU there, or ``actors``."""

    def __init__(self, suite: Path, address: str, actors: int | None = None) -> None:
        self.suite, self.address, self.actors = str(suite.resolve()), address, actors
        self._started: list[Any] = []

    async def asker(self, variant: str, pipeline: QueryPipeline, todo: Sequence[Sample]) -> Ask:
        ray = connect(self.address)
        actors = self._actors(ray)
        shards = [list(todo[i :: len(actors)]) for i in range(len(actors))]
        calls = [
            actor.answer.remote(variant, [s.question for s in shard])
            for actor, shard in zip(actors, shards, strict=True)
        ]
        results = await asyncio.to_thread(ray.get, calls)
        answered = {
            sample.id: result
            for shard, found in zip(shards, results, strict=True)
            for sample, result in zip(shard, found, strict=True)
        }

        async def ask(sample: Sample) -> tuple[Answer, Sequence[ScoredChunk]]:
            answer, error = answered[sample.id]
            if answer is None:
                raise LLMOpsError(error)
            return answer

        return ask

    def close(self) -> None:
        if self._started:
            ray = connect(self.address)
            for actor in self._started:
                ray.kill(actor)
            self._started = []

    def _actors(self, ray: Any) -> list[Any]:
        if not self._started:
            count = self.actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
            remote = ray.remote(num_cpus=1)(_Answerer)
            self._started = [remote.remote(self.suite) for _ in range(count)]
        return self._started


ANSWERING: dict[EvalEngine, Callable[[Path, str], Answering]] = {
    EvalEngine.LOCAL: lambda suite, address: InProcess(),
    EvalEngine.RAY: RayAnswering,
}


def answering_for(engine: EvalEngine, suite: Path, ray_address: str) -> Answering:
    return ANSWERING[engine](suite, ray_address)
