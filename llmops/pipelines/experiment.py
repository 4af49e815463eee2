"""An app's experiment at query time: one query pipeline per variant (sharing the index, the
embedder and, unless a variant sets its own, the generator), the router that picks one, and
the two strategies that do more than pick:

- ``canary``: a canary request that fails is answered by the serving variant instead, and
  every canary request's outcome and latency move the ramp (advance or roll back); one that
  the canary's own fallbacks answered counts as failed (its generator did);
- ``shadow``: after the serving variant has answered, the shadow variant answers a copy of the
  request in the background (from the same retrieved passages when both retrieve alike), and
  the two answers and their agreement are recorded. The response never waits for it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path
from typing import Any

from llmops.build import Components
from llmops.config.experiment import ExperimentConfig, ExperimentPolicy
from llmops.config.schema import RetrievalConfig
from llmops.errors import InvalidRequest, NotReady
from llmops.evaluation.answer_metrics import token_f1
from llmops.generation.fallback import FallbackChain
from llmops.monitoring.monitor import Monitor
from llmops.pipelines.query import Prepared, QueryOptions, QueryPipeline
from llmops.protocols import Generator
from llmops.routing.canary import CanaryState
from llmops.routing.resilient import redis_state
from llmops.routing.router import ExperimentRouter
from llmops.routing.shadow import ShadowRunner
from llmops.routing.state import RoutingState, SqliteRoutingState
from llmops.types import Answer

log = logging.getLogger(__name__)
CLIENT_ERRORS = (InvalidRequest, NotReady)
"""Failures that are the request's (or the index's), not the canary's: not held against it."""


class Experiment:
    def __init__(
        self,
        config: ExperimentConfig,
        components: Components,
        retrieval: RetrievalConfig,
        prompt: str,
        monitor: Monitor | None,
    ) -> None:
        self.config = config
        self.components = components
        self.monitor = monitor
        shadow = config.shadow.variant if config.shadow else None
        self.pipelines = {
            name: QueryPipeline(
                components,
                variant.retrieval_for(retrieval),
                variant.prompt or prompt,
                None if name == shadow else monitor,  # shadow answers serve nobody
                components.variant_generators.get(name),
                variant.adapter,
            )
            for name, variant in config.variants.items()
        }
        self.router: ExperimentRouter | None = None
        self.shadows: ShadowRunner | None = None

    async def start(self, app: str, data_dir: Path) -> None:
        if self.router is not None:
            return
        for name, generator in self.components.variant_generators.items():
            await self._start_generator(name, generator)
        state = open_state(self.config, data_dir)
        self.router = ExperimentRouter(self.config, state, app)
        if self.config.shadow is not None:
            salt = self.router.split.salt
            self.shadows = ShadowRunner(
                self.config.shadow, state, self.config.name, salt, self._count_shadow
            )
        if self.config.canary is not None:
            self._canary_moved(await state.canary(self.router.canary_key), None)

    async def _start_generator(self, variant: str, generator: Generator) -> None:
        """Start a variant's generator. A canary's or a shadow's that does not start (its
        server is down) is not the app's problem: its requests fail, which rolls the canary
        back or is recorded as the shadow's errors."""
        trial = self.config.canary or self.config.shadow
        try:
            await generator.start()
        except Exception as exc:
            if trial is None or trial.variant != variant:
                raise
            log.warning(
                "the generator of %s variant '%s' did not start (%s: %s); its requests will fail",
                self.config.strategy,
                variant,
                type(exc).__name__,
                exc,
            )

    async def close(self) -> None:
        """Wait for shadow runs first (they may use the app's generator: close the experiment
        before it), then close the variants' generators and the state store."""
        if self.router is None:
            return
        if self.shadows is not None:
            await self.shadows.close()
        router, self.router = self.router, None
        for generator in self.components.variant_generators.values():
            await generator.close()
        await router.state.close()

    def running(self) -> ExperimentRouter:
        if self.router is None:
            raise RuntimeError("experiment not started")
        return self.router

    # answering -------------------------------------------------------------------------------
    async def run(
        self, question: str, options: QueryOptions, request_id: str, key: str | None
    ) -> Answer:
        """The answer of the variant chosen for this request (see the module docstring)."""
        variant = await self.running().choose(request_id, key)
        options = replace(options, variant=variant)
        pipeline = self.pipelines[variant]
        if self._is_canary(variant):
            return await self._canary_run(question, options, request_id)
        prepared = await pipeline.prepare(question, options, request_id)
        answer = await pipeline.answer(prepared)
        self._shadow(question, options, prepared, answer)
        return answer

    async def stream(
        self, question: str, options: QueryOptions, request_id: str, key: str | None
    ) -> AsyncGenerator[str | Answer, None]:
        """``run``, streamed: the text as it is generated, then the ``Answer``."""
        variant = await self.running().choose(request_id, key)
        options = replace(options, variant=variant)
        pipeline = self.pipelines[variant]
        if self._is_canary(variant):
            async with aclosing(self._canary_stream(question, options, request_id)) as pieces:
                async for item in pieces:
                    yield item
            return
        prepared = await pipeline.prepare(question, options, request_id)
        async with aclosing(pipeline.answer_stream(prepared)) as pieces:
            async for item in pieces:
                if isinstance(item, Answer):
                    self._shadow(question, options, prepared, item)
                yield item

    # canary ----------------------------------------------------------------------------------
    def _is_canary(self, variant: str) -> bool:
        return self.config.canary is not None and variant == self.config.canary.variant

    async def _canary_run(self, question: str, options: QueryOptions, request_id: str) -> Answer:
        """Retrieval is shared with the stable variant, so only the canary's generation is
        judged: a failure there is answered by the stable variant."""
        pipeline = self.pipelines[options.variant]
        prepared = await pipeline.prepare(question, options, request_id)
        try:
            answer = await pipeline.answer(prepared)
        except CLIENT_ERRORS:
            raise
        except Exception as exc:
            await self._canary_failed(exc, prepared, request_id)
            stable, request = await self._stable(question, options, prepared)
            return await stable.answer(request)
        await self._observe_canary(self._served_by_canary(answer), answer.latency_ms)
        return answer

    async def _canary_stream(
        self, question: str, options: QueryOptions, request_id: str
    ) -> AsyncGenerator[str | Answer, None]:
        """A canary stream that fails before its first piece is served by the serving variant;
        one that fails later is cut off (its text was already sent) and held against it."""
        pipeline = self.pipelines[options.variant]
        prepared = await pipeline.prepare(question, options, request_id)
        pieces = pipeline.answer_stream(prepared)
        async with aclosing(pieces):
            try:
                first = await anext(pieces)
            except CLIENT_ERRORS:
                raise
            except Exception as exc:
                await self._canary_failed(exc, prepared, request_id)
                stable, request = await self._stable(question, options, prepared)
                async with aclosing(stable.answer_stream(request)) as fallback:
                    async for item in fallback:
                        yield item
                return
            answer = first if isinstance(first, Answer) else None
            yield first
            try:
                while answer is None:
                    item = await anext(pieces)
                    answer = item if isinstance(item, Answer) else None
                    yield item
            except Exception:
                await self._observe_canary(False, _ms_since(prepared.started))
                raise
        await self._observe_canary(self._served_by_canary(answer), answer.latency_ms)

    async def _stable(
        self, question: str, options: QueryOptions, prepared: Prepared
    ) -> tuple[QueryPipeline, Prepared]:
        """The stable variant's pipeline and request for one the canary failed: from the
        passages the canary was given when both retrieve alike."""
        canary = self.pipelines[options.variant]
        serving = replace(options, variant=self.config.serving)
        stable = self.pipelines[serving.variant]
        if stable.retrieval == canary.retrieval:
            return stable, stable.adopt(canary, prepared, serving)
        return stable, await stable.prepare(question, serving, prepared.request_id)

    def _served_by_canary(self, answer: Answer) -> bool:
        """False when one of the canary's fallbacks answered: its own generator failed."""
        generator = self.pipelines[answer.variant].generator
        if isinstance(generator, FallbackChain):
            return answer.generator == generator.generators[0].name
        return True

    async def _canary_failed(self, exc: Exception, prepared: Prepared, request_id: str) -> None:
        log.warning(
            "canary '%s' failed request %s (%s: %s); the serving variant answers it",
            self.running().canary_policy.variant,
            request_id,
            type(exc).__name__,
            exc,
        )
        await self._observe_canary(False, _ms_since(prepared.started))
        try:
            await self.running().reassign(request_id, self.config.serving)
        except Exception:
            log.exception(
                "could not record that request %s moved to the stable variant", request_id
            )

    async def _observe_canary(self, ok: bool, latency_ms: float) -> None:
        """Move the ramp; best effort: a routing store that is down must not fail the answer
        (the outcome is lost and logged)."""
        try:
            before, after = await self.running().observe_canary(ok, latency_ms)
        except Exception:
            log.exception("could not record a canary outcome (ok=%s)", ok)
            return
        move = after.moved_from(before)
        if move is not None:
            log.warning("canary '%s' %s", self.running().canary_policy.variant, after.reason)
            self._canary_moved(after, move)

    def _canary_moved(self, state: CanaryState, move: str | None) -> None:
        policy = self.running().canary_policy
        if self.monitor is not None:
            self.monitor.canary(self.config.name, policy.variant, state.share(policy), move)

    # shadow ----------------------------------------------------------------------------------
    def _shadow(
        self, question: str, options: QueryOptions, prepared: Prepared, answer: Answer
    ) -> None:
        if self.shadows is not None:
            job = functools.partial(self._shadow_run, question, options, prepared, answer)
            self.shadows.submit(answer.request_id, job)

    async def _shadow_run(
        self, question: str, options: QueryOptions, prepared: Prepared, served: Answer
    ) -> dict[str, Any]:
        """The shadow variant answers a copy of a served request (from the same passages when
        both retrieve alike); returns the run's record."""
        shadow = self.config.shadow
        assert shadow is not None
        pipeline, serving = self.pipelines[shadow.variant], self.pipelines[self.config.serving]
        same_retrieval = pipeline.retrieval == serving.retrieval
        options = replace(options, variant=shadow.variant)
        started = time.perf_counter()
        error: str | None = None
        answer: Answer | None = None
        try:
            if same_retrieval:
                answer = await pipeline.answer(pipeline.adopt(serving, prepared, options))
            else:
                answer = await pipeline.run(question, options, served.request_id)
        except Exception as exc:  # a failing shadow is data, never the user's problem
            error = f"{type(exc).__name__}: {exc}"
        return {
            "request_id": served.request_id,
            "time": time.time(),
            "serving": served.variant,
            "shadow": shadow.variant,
            "question": question,
            "serving_answer": served.answer,
            "shadow_answer": answer.answer if answer else None,
            "serving_ms": served.latency_ms,
            "shadow_ms": answer.latency_ms if answer else _ms_since(started),
            "error": error,
            "agreement": agreement(served, answer) if answer else None,
            "source_overlap": source_overlap(served, answer) if answer else None,
            "same_passages": same_retrieval,
        }

    def _count_shadow(self, outcome: str, agreement: float | None) -> None:
        if self.monitor is not None and self.config.shadow is not None:
            variant = self.config.shadow.variant
            self.monitor.shadow_run(self.config.name, variant, outcome, agreement)


def open_state(config: ExperimentPolicy, data_dir: Path) -> RoutingState:
    """The experiment's state store: its Redis (routing on through an outage, see
    ``llmops.routing.resilient``), or ``routing.sqlite`` in the app's data dir."""
    if config.redis_url:
        return redis_state(config.redis_url)
    return SqliteRoutingState(data_dir / "routing.sqlite")


def agreement(served: Answer, shadow: Answer) -> float:
    """How alike two answers are: token F1 of their texts; 1 when both abstain, 0 when only
    one does."""
    if served.abstained or shadow.abstained:
        return float(served.abstained == shadow.abstained)
    return round(token_f1(shadow.answer, served.answer), 4)


def source_overlap(served: Answer, shadow: Answer) -> float:
    """Jaccard overlap of the chunks the two answers were given (1 when both had none)."""
    a = {s.chunk_id for s in served.sources}
    b = {s.chunk_id for s in shadow.sources}
    return round(len(a & b) / len(a | b), 4) if a | b else 1.0


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
