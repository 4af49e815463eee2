"""Hyperparameter search with Optuna: TPE with a seed, the space from the YAML, each trial
scored by k-fold cross-validation (pruned after a fold when it is clearly worse than the
median trial so far), the study kept in SQLite so that a killed search resumes with the
trials it had finished."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.config.model_app import ParamSpace, SearchConfig, Task
from llmops.deps import require
from llmops.ml.metrics import LOWER_IS_BETTER, score

log = logging.getLogger(__name__)

MakeModel = Callable[[Mapping[str, Any]], Any]
TrialDone = Callable[[int, Mapping[str, Any], float], None]
"""Told of each finished trial: its number, parameters and cross-validated score."""


@dataclass(frozen=True)
class SearchResult:
    best_params: dict[str, Any]
    best_score: float
    trials_run: int  # by this call (scored or pruned)
    trials_total: int  # finished in the study, earlier runs included


@dataclass(frozen=True)
class Labelled:
    """Rows to fit and score on: the table, its target column, the task and (binary
    classification) the class whose probability is scored."""

    frame: Any
    target: str
    task: Task
    positive: str | None = None


def run_search(
    config: SearchConfig,
    make_model: MakeModel,
    rows: Labelled,
    storage: Path,
    study_name: str,
    trial_done: TrialDone | None = None,
) -> SearchResult:
    """Search ``config.space`` until the study holds ``n_trials`` finished trials (or the
    timeout); a study of the same name in ``storage`` is resumed."""
    optuna = require("optuna", "ml")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=study_name,
        storage=f"sqlite:///{storage}",
        load_if_exists=True,
        direction="minimize" if config.metric in LOWER_IS_BETTER else "maximize",
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
    )
    done_before = _finished(study)
    objective = _Objective(config, make_model, rows, trial_done)
    remaining = max(0, config.n_trials - done_before)
    if remaining:
        study.optimize(objective, n_trials=remaining, timeout=config.timeout_s)
    finished = _finished(study)
    if not study.best_trials:
        raise RuntimeError("no search trial was scored: check the search space and the data")
    return SearchResult(
        dict(study.best_params), float(study.best_value), finished - done_before, finished
    )


def _finished(study: Any) -> int:
    """Trials that ran to their end: scored, or pruned as hopeless (not failed or cut off)."""
    state = require("optuna", "ml").trial.TrialState
    return sum(t.state in (state.COMPLETE, state.PRUNED) for t in study.trials)


def suggest(trial: Any, name: str, space: ParamSpace) -> Any:
    """One parameter drawn from its space."""
    if space.choices is not None:
        return trial.suggest_categorical(name, space.choices)
    assert space.low is not None and space.high is not None  # checked by the config
    if space.integer:
        return trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
    return trial.suggest_float(name, space.low, space.high, log=space.log)


class _Objective:
    """One trial: draw the parameters, score them fold by fold, report each fold's running
    mean so the pruner can stop a poor trial early."""

    def __init__(
        self,
        config: SearchConfig,
        make_model: MakeModel,
        rows: Labelled,
        trial_done: TrialDone | None,
    ) -> None:
        self.config, self.make_model, self.trial_done = config, make_model, trial_done
        self.features, self.truth = rows.frame.drop(columns=[rows.target]), rows.frame[rows.target]
        self.task, self.positive = rows.task, rows.positive

    def __call__(self, trial: Any) -> float:
        optuna = require("optuna", "ml")
        params = {name: suggest(trial, name, s) for name, s in self.config.space.items()}
        scores: list[float] = []
        for fold, (fit_rows, score_rows) in enumerate(self._folds()):
            model = self.make_model(params)
            model.fit(self.features.iloc[fit_rows], self.truth.iloc[fit_rows])
            figures = score(
                model,
                self.features.iloc[score_rows],
                self.truth.iloc[score_rows],
                self.task,
                self.positive,
            )
            scores.append(figures[self.config.metric])
            trial.report(sum(scores) / len(scores), fold)
            if trial.should_prune():
                raise optuna.TrialPruned()
        value = sum(scores) / len(scores)
        if self.trial_done is not None:
            self.trial_done(trial.number, params, value)
        return value

    def _folds(self) -> Any:
        selection = require("sklearn.model_selection", "ml")
        c = self.config
        if self.task == "classification":
            folds = selection.StratifiedKFold(c.cv_folds, shuffle=True, random_state=c.seed)
            return folds.split(self.features, self.truth)
        return selection.KFold(c.cv_folds, shuffle=True, random_state=c.seed).split(self.features)
