"""Tables for training: read a CSV or Parquet file (or, with ``data.feast``, the entity
table joined to its features by Feast), and split it into train / valid / test rows (by a
seeded ratio, stratified for classification; by a column; or by time)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.config import resolve_path
from llmops.config.model_app import DataConfig, FeastSource, SplitConfig, TableSource, Task
from llmops.deps import require
from llmops.errors import DatasetError
from llmops.ml.feature_store import TIMESTAMP, training_table


@dataclass(frozen=True)
class Splits:
    """The rows to fit on, to choose by (search and early checks) and to report on."""

    train: Any  # pandas.DataFrame
    valid: Any
    test: Any


def read_table(path: Path, source: TableSource) -> Any:
    """The file as a DataFrame; a missing or malformed file raises DatasetError naming it."""
    pandas = require("pandas", "ml")
    kind = source.format or ("parquet" if path.suffix.lower() == ".parquet" else "csv")
    try:
        if kind == "parquet":
            return pandas.read_parquet(path)
        frame = pandas.read_csv(
            path,
            na_values=source.na_values or None,
            skipinitialspace=source.skip_initial_space,
        )
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read it as {kind}: {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def load_splits(config: DataConfig, base_dir: Path, target: str, task: Task) -> Splits:
    """Train, valid and test rows as the config says; target values renamed by target_map."""
    if config.feast is not None:
        return _feast_splits(config, config.feast, base_dir, target, task)
    assert config.train is not None  # the config holds exactly one of train and feast
    train = _renamed(read_table(base_dir / config.train.path, config.train), config, target)
    test = None
    if config.test is not None:
        test = _renamed(read_table(base_dir / config.test.path, config.test), config, target)
    return split(train, test, config.split, target, task)


def _feast_splits(
    config: DataConfig, source: FeastSource, base_dir: Path, target: str, task: Task
) -> Splits:
    """The training table from Feast, split; ``event_timestamp`` (which a split may go by)
    is dropped afterwards: served rows do not carry it."""
    path = resolve_path(base_dir, source.entities)
    entities = read_table(path, TableSource(path=source.entities))
    frame = _renamed(training_table(source, base_dir, entities, target), config, target)
    parts = split(frame, None, config.split, target, task)
    train, valid, test = (
        p.drop(columns=[TIMESTAMP]) for p in (parts.train, parts.valid, parts.test)
    )
    return Splits(train, valid, test)


def data_sha256(config: DataConfig, base_dir: Path) -> str:
    """SHA-256 of the training data's files: the train and test files; with Feast, the entity
    table and the feature references (or service name), so either changing is new data."""
    digest = hashlib.sha256()
    for source in (config.train, config.test):
        if source is not None:
            digest.update(resolve_path(base_dir, source.path).read_bytes())
    if config.feast is not None:
        digest.update(resolve_path(base_dir, config.feast.entities).read_bytes())
        digest.update(json.dumps(config.feast.features).encode())
    return digest.hexdigest()


def _renamed(frame: Any, config: DataConfig, target: str) -> Any:
    if config.target_map and target in frame.columns:
        frame[target] = frame[target].replace(config.target_map)
    return frame


def split(frame: Any, test: Any, config: SplitConfig, target: str, task: Task) -> Splits:
    """Split ``frame`` (and, without a ``test`` table, a test share of it too)."""
    if config.column is not None:
        return _by_column(frame, test, config.column)
    if config.time_column is not None:
        frame = frame.sort_values(config.time_column, kind="stable")
        test_rows = 0 if test is not None else int(len(frame) * config.test_ratio)
        valid_rows = int((len(frame) - test_rows) * config.valid_ratio)
        rest, held = frame.iloc[: len(frame) - test_rows], frame.iloc[len(frame) - test_rows :]
        cut = len(rest) - valid_rows
        return Splits(rest.iloc[:cut], rest.iloc[cut:], test if test is not None else held)
    if test is None:
        frame, test = _shuffled_split(frame, config.test_ratio, config.seed, target, task)
    train, valid = _shuffled_split(frame, config.valid_ratio, config.seed, target, task)
    return Splits(train, valid, test)


def _shuffled_split(frame: Any, ratio: float, seed: int, target: str, task: Task) -> Any:
    selection = require("sklearn.model_selection", "ml")
    stratify = frame[target] if task == "classification" else None
    return selection.train_test_split(frame, test_size=ratio, random_state=seed, stratify=stratify)


def _by_column(frame: Any, test: Any, column: str) -> Splits:
    if column not in frame.columns:
        raise DatasetError(f"split.column '{column}' is not a column of the training data")
    labels = frame[column].astype(str).str.lower()
    parts = {name: frame[labels == name].drop(columns=[column]) for name in ("train", "valid")}
    held = frame[labels == "test"].drop(columns=[column]) if test is None else test
    return Splits(parts["train"], parts["valid"], held)
