"""The prediction log: rows written by its thread, labels joined late (served and shadow
predictions of a row alike), a second label replacing the first, unknown ids listed, old rows
pruned."""

from __future__ import annotations

import time
from pathlib import Path

from llmops.monitoring.prediction_log import Label, PredictedRequest, PredictionLog


def request(
    request_id: str, version: int = 1, shadow: bool = False, age: float = 0
) -> PredictedRequest:
    return PredictedRequest(
        request_id, "adult", "candidate" if shadow else "production", version,
        rows=[{"age": 30}, {"age": 50}], predictions=["<=50K", ">50K"], scores=[0.2, 0.7],
        time=time.time() - age, shadow=shadow,
    )  # fmt: skip


def test_labels_join_served_and_shadow_predictions_late(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p.sqlite")
    log.start()
    try:
        log.record(request("r1"))
        log.record(request("r1", version=2, shadow=True))
        joined, unknown = log.label([Label("r1", 1, ">50K"), Label("r9", 0, "<=50K")])
        assert unknown == [Label("r9", 0, "<=50K")]
        assert sorted((j.version, j.shadow, j.prediction, j.score) for j in joined) == [
            (1, False, ">50K", 0.7),
            (2, True, ">50K", 0.7),
        ]
        log.label([Label("r1", 1, "<=50K")])  # a correction replaces the first label
        assert log.labelled(1, 10) == [(">50K", "<=50K", 0.7)]
        assert log.count() == 4
    finally:
        log.close()


def test_rows_older_than_the_retention_are_pruned(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p.sqlite", retention_days=1)
    log.start()
    try:
        log.record(request("old", age=3 * 86400))
        log.record(request("new"))
        log.flush()  # the writer prunes at its first write, then once a minute
        assert log.count() == 2  # the old request's two rows went, the new one's stay
        assert log.label([Label("old", 0, "x")])[1] == [Label("old", 0, "x")]
    finally:
        log.close()
