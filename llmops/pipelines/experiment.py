"""An app's experiment at query time: one query pipeline per variant (sharing the index, the
embedder and, unless a variant sets its own, the generator) and the router that picks one."""

from __future__ import annotations

from pathlib import Path

from llmops.build import Components
from llmops.config.experiment import ExperimentConfig
from llmops.config.schema import RetrievalConfig
from llmops.monitoring.monitor import Monitor
from llmops.pipelines.query import QueryPipeline
from llmops.routing.router import ExperimentRouter
from llmops.routing.state import RedisRoutingState, RoutingState, SqliteRoutingState


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
        base = retrieval.model_dump(by_alias=True)
        self.pipelines = {
            name: QueryPipeline(
                components,
                RetrievalConfig.model_validate({**base, **variant.retrieval}),
                variant.prompt or prompt,
                monitor,
                components.variant_generators.get(name),
            )
            for name, variant in config.variants.items()
        }
        self.router: ExperimentRouter | None = None

    async def start(self, app: str, data_dir: Path) -> None:
        if self.router is not None:
            return
        for generator in self.components.variant_generators.values():
            await generator.start()
        state: RoutingState = (
            RedisRoutingState(self.config.redis_url)
            if self.config.redis_url
            else SqliteRoutingState(data_dir / "routing.sqlite")
        )
        self.router = ExperimentRouter(self.config, state, app)

    async def close(self) -> None:
        router, self.router = self.router, None
        if router is None:
            return
        for generator in self.components.variant_generators.values():
            await generator.close()
        await router.state.close()

    def running(self) -> ExperimentRouter:
        if self.router is None:
            raise RuntimeError("experiment not started")
        return self.router

    async def route(self, request_id: str, key: str | None) -> tuple[str, QueryPipeline]:
        """The variant serving this request (recorded for feedback) and its pipeline."""
        variant = await self.running().choose(request_id, key)
        return variant, self.pipelines[variant]
