"""``ModelService``: a model app served — the registered versions its routing names (by default
the one ``serving.alias`` points at), micro-batched on one thread, every prediction logged and
watched for drift, labels joined later, and the retraining loop when the app configures it.
Versions follow their aliases: when ``llmops models promote`` or ``rollback`` (or the
retraining loop) moves one, the running service loads the new version and swaps it in between
two batches, without a restart; a move through ``registered`` (the HTTP promote and rollback
routes) is served before the call returns.

    service = ModelService.from_config("configs/adult.yaml")
    await service.astart()
    answer = await service.predict("adult", [{"age": 39, ...}])
    await service.label([Label(answer.request_id, 0, ">50K")])
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.config import LoadedModelApp, load_model_app_config
from llmops.config.experiment import CanaryConfig
from llmops.config.model_app import ModelRoutingConfig, ModelVariant
from llmops.errors import InvalidRequest, InvalidRows, UnknownModel
from llmops.ml.batching import MicroBatcher
from llmops.ml.feature_store import feature_completer
from llmops.ml.predict import (
    Prediction,
    RowChecker,
    features_frame,
    one_openmp_thread,
    predict_rows,
    row_problems,
)
from llmops.monitoring.model_metrics import ModelMetrics
from llmops.monitoring.prediction_log import Joined, Label
from llmops.pipelines.model_monitor import ModelMonitor
from llmops.pipelines.model_routing import ModelRouting
from llmops.pipelines.registered_models import RegisteredModels, RegisteredModelSet
from llmops.pipelines.retrain import Retrainer
from llmops.pipelines.served_versions import Served, ServedVersions
from llmops.pipelines.train import app_data_dir, app_registry
from llmops.routing.canary import CanaryState

log = logging.getLogger(__name__)

Problems = list[tuple[str | None, str]]
Outcome = tuple[Served, Prediction | Problems]
"""What the batching thread answers per row: the version that ran and its prediction, or
the rules the row broke."""


@dataclass(frozen=True)
class PredictionResult:
    model: str
    version: int
    alias: str  # the registry reference that answered: an alias, or a version number
    variant: str
    request_id: str
    predictions: list[Prediction]


class ModelService:
    def __init__(self, loaded: LoadedModelApp) -> None:
        self.loaded = loaded
        self.app = loaded.app
        self.data_dir = app_data_dir(loaded)
        self.registry = app_registry(loaded)
        self.metrics = ModelMetrics(self.name)
        self.monitor = ModelMonitor(loaded, self.metrics, self._alert)
        self.versions = ServedVersions(self.registry, self.app, self.monitor.prepare)
        self.checker = RowChecker(self.app)
        headline = self.app.search.metric if self.app.search is not None else None
        self.registered = RegisteredModelSet(  # versions, promote and rollback, served at once
            [
                RegisteredModels(
                    self.registry, self.name, self.alias, headline, self._served, self.refresh
                )
            ]
        )
        self.routing: ModelRouting | None = None  # the app's `routing:`
        self.rollout: ModelRouting | None = None  # the retraining loop's canary, while out
        self.retrainer = (
            Retrainer(loaded, self.registry, self.metrics, self.start_rollout)
            if self.app.monitoring.retrain is not None
            else None
        )
        self.completer: Any = None
        self._batcher = MicroBatcher(
            self._predict_batch, self.app.serving.max_batch_rows, setup=one_openmp_thread
        )
        self._follower: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, path: str | Path) -> ModelService:
        return cls(load_model_app_config(path))

    @property
    def name(self) -> str:
        return self.app.model_name

    @property
    def alias(self) -> str:
        return self.app.serving.alias

    # lifecycle -------------------------------------------------------------------------------
    async def astart(self) -> None:
        """Load the versions served (when there are any), start following their aliases, the
        monitoring and the retraining loop."""
        if self._follower is not None:
            return
        self.completer = await asyncio.to_thread(feature_completer, self.loaded)
        self.monitor.start()
        self._batcher.start()
        routing = self.app.routing
        if routing is not None:
            refs = {name: variant.ref for name, variant in routing.variants.items()}
            self.routing = self._routing(routing, refs)
            await self.routing.start()
        self.versions.follow(*self._refs(self.routing))
        await self.versions.refresh()
        self._track_production()
        if self.retrainer is not None:
            await self.retrainer.start()
        self._follower = asyncio.create_task(self._follow())

    async def aclose(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        if self.retrainer is not None:
            await self.retrainer.close()
        for routing in (self.rollout, self.routing):
            if routing is not None:
                await routing.close()
        await asyncio.to_thread(self._batcher.close)
        await asyncio.to_thread(self.monitor.close)

    def _routing(
        self, config: ModelRoutingConfig, refs: Mapping[str, str], on_move: Any = None
    ) -> ModelRouting:
        return ModelRouting(config, refs, self.name, self.data_dir, self.metrics, on_move)

    def _refs(self, routing: ModelRouting | None) -> list[str]:
        return list(routing.refs.values()) if routing is not None else [self.alias]

    # predicting ------------------------------------------------------------------------------
    async def predict(
        self,
        model: str,
        rows: Sequence[Mapping[str, Any]],
        request_id: str | None = None,
        key: str | None = None,
    ) -> PredictionResult:
        """Predictions for ``rows`` by the variant routing picks for this request (``key``
        keeps a user on one variant). Unknown model → UnknownModel; too many rows →
        InvalidRequest; rows breaking the schema → InvalidRows naming row and column; no
        version loaded → NotReady."""
        if model != self.name:
            raise UnknownModel(f"no model '{model}' here; this server serves '{self.name}'")
        limit = self.app.serving.max_rows
        if len(rows) > limit:
            raise InvalidRequest(
                f"{len(rows)} rows in one request; the limit is {limit} (serving.max_rows)"
            )
        if self.completer is not None:
            rows = await asyncio.to_thread(self.completer.complete, rows)
        request_id = request_id or uuid.uuid4().hex
        routing = self.rollout or self.routing
        variant = await routing.choose(request_id, key) if routing else self.alias
        ref = routing.refs[variant] if routing else self.alias
        self.checker.check_shape(rows, self.versions.get(ref).columns)
        started = time.perf_counter()
        try:
            served, predictions = await self._run(ref, rows)
        except InvalidRows:
            self.metrics.failed(variant, "invalid")
            raise
        except Exception:
            self.metrics.failed(variant, "error")
            if routing is None or variant != routing.canary:
                raise
            log.exception("canary version (%s) failed; the stable version answers", ref)
            variant = await routing.canary_failed(request_id, _ms_since(started))
            ref = routing.refs[variant]
            served, predictions = await self._run(ref, rows)
        else:
            if routing is not None and variant == routing.canary:
                await routing.observe_canary(True, _ms_since(started))
        seconds = time.perf_counter() - started
        self.monitor.predicted(request_id, variant, served, rows, predictions, seconds)
        if routing is not None and routing.shadows is not None:
            job = functools.partial(
                self._shadow_run, routing, request_id, rows, variant, predictions, seconds
            )
            routing.shadow(request_id, job)
        return PredictionResult(
            self.name, served.version.version, ref, variant, request_id, predictions
        )

    async def _run(
        self, ref: str, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[Served, list[Prediction]]:
        """``rows`` predicted by the version ``ref`` points at, on the batching thread."""
        outcomes = await self._batcher.submit([(ref, row) for row in rows])
        problems = {i: o for i, (_, o) in enumerate(outcomes) if not isinstance(o, Prediction)}
        if problems:
            raise InvalidRows(row_problems(problems))
        return outcomes[0][0], [o for _, o in outcomes if isinstance(o, Prediction)]

    def _predict_batch(self, items: list[tuple[str, Mapping[str, Any]]]) -> list[Outcome]:
        """Runs on the batching thread: every waiting request's rows, one schema check and
        one model call per version. Each version is read once: a swap lands between batches,
        never inside one."""
        outcomes: list[Outcome | None] = [None] * len(items)
        for ref in dict.fromkeys(ref for ref, _ in items):
            served = self.versions.get(ref)
            positions = [i for i, (r, _) in enumerate(items) if r == ref]
            frame = features_frame([items[i][1] for i in positions], served.columns)
            problems = self.checker.problems(frame)
            valid = [p for p in range(len(positions)) if p not in problems]
            predictions = predict_rows(served.model, frame.iloc[valid]) if valid else []
            for p, prediction in zip(valid, predictions, strict=True):
                outcomes[positions[p]] = (served, prediction)
            for p, broken in problems.items():
                outcomes[positions[p]] = (served, broken)
        return [o for o in outcomes if o is not None]

    async def _shadow_run(
        self,
        routing: ModelRouting,
        request_id: str,
        rows: Sequence[Mapping[str, Any]],
        variant: str,
        predictions: list[Prediction],
        serving_s: float,
    ) -> dict[str, Any]:
        """The shadow version predicts a served request's rows; returns the run's record."""
        shadow = routing.config.shadow
        assert shadow is not None
        started = time.perf_counter()
        error, labels, version = None, None, None
        try:
            served, answered = await self._run(routing.refs[shadow.variant], rows)
            labels, version = [p.label for p in answered], served.version.version
            seconds = time.perf_counter() - started
            self.monitor.predicted(
                request_id, shadow.variant, served, rows, answered, seconds, shadow=True
            )
        except Exception as exc:  # a failing shadow is data, never the user's problem
            error = f"{type(exc).__name__}: {exc}"
        served_labels = [p.label for p in predictions]
        same = None
        if labels is not None:
            same = sum(a == b for a, b in zip(labels, served_labels, strict=True))
        return {
            "request_id": request_id,
            "time": time.time(),
            "serving": variant,
            "shadow": shadow.variant,
            "shadow_version": version,
            "serving_answer": served_labels,
            "shadow_answer": labels,
            "serving_ms": round(serving_s * 1000, 2),
            "shadow_ms": _ms_since(started),
            "error": error,
            "agreement": None if same is None else round(same / len(rows), 4),
        }

    # labels ----------------------------------------------------------------------------------
    async def label(self, labels: Sequence[Label]) -> tuple[list[Joined], list[Label]]:
        """Join true labels to logged predictions (live metrics, alerts) and reward the
        variants that made them (Thompson sampling); returns (joined, unknown)."""
        joined, unknown = await asyncio.to_thread(self.monitor.label, labels)
        routing = self.rollout or self.routing
        if routing is not None and routing.config.strategy == "thompson":
            served = [item for item in joined if not item.shadow]
            for request_id, reward in _rewards(served).items():
                try:
                    await routing.router.feedback(request_id, reward)
                except InvalidRequest:  # already rewarded, or routed before this experiment
                    continue
        return joined, unknown

    # the retraining loop's rollout -----------------------------------------------------------
    async def start_rollout(self, version: int) -> None:
        """Serve ``version`` as a canary beside production, ramped by ``retrain.canary``."""
        retrain = self.app.monitoring.retrain
        assert retrain is not None and self.retrainer is not None
        canary = f"v{version}"
        config = ModelRoutingConfig(
            name=f"{self.app.name}-rollout",
            strategy="canary",
            variants={
                self.alias: ModelVariant(alias=self.alias),
                canary: ModelVariant(version=version),
            },
            canary=CanaryConfig.model_validate({**retrain.canary.model_dump(), "variant": canary}),
            key=self.app.routing.key if self.app.routing else "x-user-id",
        )
        rollout = self._routing(
            config,
            {self.alias: self.alias, canary: str(version)},
            functools.partial(self._rollout_moved, version),
        )
        self.versions.follow(str(version))
        await self.versions.refresh()
        await rollout.start()
        self.rollout = rollout

    async def _rollout_moved(self, version: int, before: CanaryState, after: CanaryState) -> None:
        rollout = self.rollout
        if rollout is None or self.retrainer is None:
            return
        share = after.share(rollout.router.canary_policy)
        await self.retrainer.canary_moved(before, after, share)
        if after.rolled_back or share >= 1.0:
            self.rollout = None
            await rollout.close()
            await self.versions.refresh()  # production may have moved
            self.versions.unfollow(str(version))
            self._track_production()

    def _alert(self, alert: Any) -> None:
        if self.retrainer is not None:
            self.retrainer.alert(alert)

    # status ----------------------------------------------------------------------------------
    def _track_production(self) -> None:
        """Alerts count for the version the serving alias points at."""
        if self.versions.loaded(self.alias):
            self.monitor.production = self.versions.get(self.alias).version.version

    def status(self) -> dict[str, Any]:
        """What ``GET /models`` shows: the version the alias serves, each variant's version,
        live metrics and drift, the routing and the retraining loop's steps."""
        main = self.versions.get(self.alias) if self.versions.loaded(self.alias) else None
        routing = self.rollout or self.routing
        refs = routing.refs if routing else {self.alias: self.alias}
        variants = {}
        for variant, ref in refs.items():
            served = self.versions.get(ref) if self.versions.loaded(ref) else None
            number = served.version.version if served else None
            variants[variant] = {
                "ref": ref,
                "version": number,
                "error": self.versions.errors.get(ref),
                **(self.monitor.status(number) if number is not None else {}),
            }
        return {
            "model": self.name,
            "alias": self.alias,
            "version": main.version.version if main else None,
            "run_id": main.version.run_id if main else None,
            "metrics": main.version.metrics if main else {},
            "last_error": self.versions.errors.get(self.alias),
            "routing": routing.name if routing else None,
            "variants": variants,
            "retraining": self.retrainer.status() if self.retrainer else None,
        }

    def _served(self) -> dict[str, int]:
        """``{reference: version number}`` of the versions answering now."""
        refs = self._refs(self.rollout or self.routing)
        return {r: self.versions.get(r).version.version for r in refs if self.versions.loaded(r)}

    async def routing_report(self) -> dict[str, Any] | None:
        routing = self.rollout or self.routing
        return await routing.router.report() if routing is not None else None

    @property
    def ready(self) -> bool:
        return all(self.versions.loaded(ref) for ref in self._refs(self.rollout or self.routing))

    def not_ready_reason(self) -> str:
        refs = self._refs(self.rollout or self.routing)
        missing = [ref for ref in refs if not self.versions.loaded(ref)]
        return "; ".join(self.versions.reason(ref) for ref in missing)

    # alias following ---------------------------------------------------------------------------
    async def refresh(self) -> None:
        await self.versions.refresh()
        self._track_production()

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.app.serving.refresh_s)
            await self.refresh()


def _rewards(joined: Sequence[Joined]) -> dict[str, float]:
    """Per request: the share of its labelled rows predicted right."""
    hits: dict[str, list[bool]] = {}
    for item in joined:
        hits.setdefault(item.request_id, []).append(str(item.prediction) == str(item.truth))
    return {request_id: sum(h) / len(h) for request_id, h in hits.items()}


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
