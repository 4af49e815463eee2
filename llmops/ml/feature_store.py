"""Feast as a model app's feature source (``data.feast``, the ``feast`` extra).

Training: the entity table (keys, ``event_timestamp``, target) is joined point-in-time to the
features by ``FeatureStore.get_historical_features``, which gives the training table.
Serving: ``FeatureCompleter.complete`` fills the feature columns a ``/predict`` row leaves out
from the online store, looked up by the row's entity key(s):

    completer = feature_completer(loaded)          # None when the app does not use Feast
    rows = completer.complete([{"customer_id": 7}])  # [{"customer_id": 7, "age": 41, ...}]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmops.config import LoadedModelApp, resolve_path
from llmops.config.model_app import FeastSource
from llmops.deps import require
from llmops.errors import DatasetError, InvalidRows, RowProblem
from llmops.ml.predict import MAX_PROBLEMS

TIMESTAMP = "event_timestamp"
"""The entity table's column of the times its rows' features are read as of."""
_ROW = "__llmops_row"  # the entity table's row order, through Feast's join


class UnknownEntity(InvalidRows):
    """Rows whose entity key the online store does not hold (HTTP 422, per row): the entity was
    never materialized, or its features are older than the feature view's ttl."""


def feast_module() -> Any:
    """The ``feast`` package, imported with its usage telemetry switched off (``require``
    keeps the Prometheus environment feast's import changes)."""
    os.environ.setdefault("FEAST_USAGE", "False")
    return require("feast", "feast")


def open_store(source: FeastSource, base_dir: Path) -> Any:
    """The ``FeatureStore`` of ``source.repo``; a folder without feature_store.yaml raises
    DatasetError naming it."""
    repo = resolve_path(base_dir, source.repo)
    if not (repo / "feature_store.yaml").is_file():
        raise DatasetError(
            f"data.feast.repo: no feature_store.yaml in {repo}; point it at a Feast feature "
            "repository (the folder `feast init` makes) that has been applied (`feast apply`)"
        )
    feast = feast_module()
    try:
        return feast.FeatureStore(repo_path=str(repo))
    except Exception as exc:  # Feast raises its own types and pydantic's for a bad yaml
        raise DatasetError(f"data.feast.repo: {repo}: {exc}") from None


def _features(store: Any, source: FeastSource) -> Any:
    """What Feast's retrieval calls take: the references, or the feature service object."""
    listed = source.feature_list()
    if listed is not None:
        return listed
    return _feast_call(lambda: store.get_feature_service(source.features))


def feature_columns(features: Any) -> list[str]:
    """The columns Feast returns for ``features`` (references or a feature service)."""
    if isinstance(features, list):
        return [ref.split(":", 1)[1] for ref in features]
    return [
        field.name
        for projection in features.feature_view_projections
        for field in projection.features
    ]


def _feast_call(call: Any) -> Any:
    feast_module()  # telemetry off before the first import
    errors = require("feast.errors", "feast")
    try:
        return call()
    except (errors.FeastError, KeyError, ValueError) as exc:
        raise DatasetError(f"data.feast: {exc}") from None


def training_table(source: FeastSource, base_dir: Path, entities: Any, target: str) -> Any:
    """The entity table with the features joined on as of each row's ``event_timestamp``
    (``get_historical_features(...).to_df()``); missing columns raise DatasetError."""
    pandas = require("pandas", "ml")
    required = [*source.entity_keys, TIMESTAMP, target]
    missing = [c for c in required if c not in entities.columns]
    if missing:
        raise DatasetError(
            f"data.feast.entities: the entity table lacks {', '.join(missing)}; it holds the "
            f"entity key(s), {TIMESTAMP} and the target"
        )
    entities = entities.assign(
        **{TIMESTAMP: pandas.to_datetime(entities[TIMESTAMP], utc=True), _ROW: range(len(entities))}
    )
    store = open_store(source, base_dir)
    features = _features(store, source)
    frame = _feast_call(
        lambda: store.get_historical_features(entity_df=entities, features=features).to_df()
    )
    # Feast returns the rows in its join's order: back to the entity table's, so a seeded
    # split picks the same rows whatever the offline store
    return frame.sort_values(_ROW).drop(columns=[_ROW]).reset_index(drop=True)


class FeatureCompleter:
    """Completes ``/predict`` rows from Feast's online store. Each call is one online lookup
    for all the rows that need it; blocking (the online store's I/O): call it from a worker
    thread in async code."""

    def __init__(self, store: Any, features: Any, entity_keys: Sequence[str]) -> None:
        self.store = store
        self.features = features
        self.entity_keys = list(entity_keys)
        self.columns = feature_columns(features)
        self._lock = threading.Lock()  # one online-store connection, shared by threads

    def complete(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` with their missing feature columns filled in; values a row sent are kept.

        A row that holds every feature column passes unchanged; a row that lacks some needs
        its entity key(s), else InvalidRows names it; a key the online store does not hold
        raises UnknownEntity naming the row and the key. Rows that are not objects pass
        unchanged (the schema check reports them).
        """
        done = [dict(row) if isinstance(row, Mapping) else row for row in rows]
        wanted = [
            i
            for i, row in enumerate(done)
            if isinstance(row, dict) and any(c not in row for c in self.columns)
        ]
        lacking = [
            RowProblem(i, key, f"missing: send the entity key {key!r} or every feature column")
            for i in wanted
            for key in self.entity_keys
            if key not in done[i]
        ]
        if lacking:
            raise InvalidRows(lacking[:MAX_PROBLEMS])
        if wanted:
            self._fill([done[i] for i in wanted], wanted)
        return done

    def _fill(self, rows: list[dict[str, Any]], indexes: list[int]) -> None:
        entity_rows = [{key: row[key] for key in self.entity_keys} for row in rows]
        with self._lock:
            response = self.store.get_online_features(
                features=self.features, entity_rows=entity_rows
            )
        values = response.to_dict()
        found = self._found(response, len(rows))
        unknown = [
            RowProblem(
                index,
                self.entity_keys[0],
                f"entity {_key_text(entity)} is not in the online store (never materialized, "
                "or older than its feature view's ttl)",
            )
            for index, entity, ok in zip(indexes, entity_rows, found, strict=True)
            if not ok
        ]
        if unknown:
            raise UnknownEntity(unknown[:MAX_PROBLEMS])
        for n, row in enumerate(rows):
            for column in self.columns:
                row.setdefault(column, values[column][n])

    def _found(self, response: Any, count: int) -> list[bool]:
        """Per row: whether the online store held any of its features (a NULL_VALUE is held;
        NOT_FOUND and OUTSIDE_MAX_AGE are not)."""
        serving = require("feast.protos.feast.serving.ServingService_pb2", "feast")
        held = {serving.FieldStatus.PRESENT, serving.FieldStatus.NULL_VALUE}
        names = list(response.proto.metadata.feature_names.val)
        found = [False] * count
        for name, result in zip(names, response.proto.results, strict=True):
            if name in self.columns:
                for n, status in enumerate(result.statuses):
                    found[n] = found[n] or status in held
        return found


def _key_text(entity: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in entity.items())


def feature_completer(loaded: LoadedModelApp) -> FeatureCompleter | None:
    """The completer of a model app that reads its features from Feast (``data.feast``);
    None for an app that does not. Opens the feature store (imports feast, reads its
    registry): call it once at start, off the event loop."""
    source = loaded.app.data.feast
    if source is None:
        return None
    store = open_store(source, loaded.base_dir)
    return FeatureCompleter(store, _features(store, source), source.entity_keys)
