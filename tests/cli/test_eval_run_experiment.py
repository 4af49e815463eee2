"""`experiment: true` in a suite: the app's own experiment variants evaluated offline next to
the baseline and the suite's variants, on the tiny test corpus (hashing embedder, BM25, Chroma,
extractive answers); each generator started and closed once; mistakes located in the suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmops.build import AppSpec, Components
from llmops.cli.main import app
from llmops.errors import ConfigError
from llmops.pipelines import eval_run
from llmops.pipelines.eval_run import load_checked_suite, run_suite
from llmops.protocols import Generator
from tests.conftest import HASHING, ConfigWriter
from tests.eval_suite_data import QA, write_suite

ROOT = Path(__file__).resolve().parents[2]
METRICS = ["hit@4", "recall@4", "mrr@4", "token_f1", "abstention_accuracy"]
EXPERIMENT = {
    "name": "passages",
    "variants": {
        "narrow": {"retrieval": {"top_k": 1}},
        "wide": {
            "retrieval": {"top_k": 4},
            "generator": {"type": "extractive", "min_score": 0.2},
        },
    },
}


TWO_PAGES = {
    "id": "both",
    "question": "What does the team edition cost, and how do I restore a backup?",
    "answers": ["20 euros per seat and month; stop the server and run widgetron restore."],
    "context_ids": ["docs/pricing.md", "docs/backup.md"],
}


def _app(write_config: ConfigWriter, experiment: dict[str, Any] | None = EXPERIMENT) -> Path:
    generator = {"type": "extractive", "min_score": 0.3}
    if experiment is None:
        return write_config(embedder=HASHING, generator=generator)
    return write_config(embedder=HASHING, generator=generator, experiment=experiment)


class _Counted:
    """Counts the start and close calls of the generators the runner's build made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: dict[int, list[str]] = {}
        self.components: Components | None = None
        real = eval_run.build

        def build(spec: AppSpec) -> Components:
            self.components = real(spec)
            for generator in [
                self.components.generator,
                *self.components.variant_generators.values(),
            ]:
                self._wrap(generator)
            return self.components

        monkeypatch.setattr(eval_run, "build", build)

    def _wrap(self, generator: Generator) -> None:
        calls = self.calls.setdefault(id(generator), [])
        start, close = generator.start, generator.close

        async def counted_start() -> None:
            calls.append("start")
            await start()

        async def counted_close() -> None:
            calls.append("close")
            await close()

        generator.start = counted_start  # type: ignore[method-assign]
        generator.close = counted_close  # type: ignore[method-assign]


def test_experiment_variants_run_next_to_baseline_and_suite_variants(
    tmp_path: Path, write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = _Counted(monkeypatch)
    suite = write_suite(
        tmp_path,
        _app(write_config),
        metrics=METRICS,
        gates=[],
        variants=[{"name": "top2", "retrieval": {"top_k": 2}}],
        experiment=True,
    )
    with (tmp_path / "qa.jsonl").open("a") as out:  # a question two pages answer together
        out.write(json.dumps(TWO_PAGES) + "\n")
    result = run_suite(suite, track=False)

    assert list(result.summaries) == ["baseline", "top2", "narrow", "wide"]
    assert set(result.comparisons) == {"top2", "narrow", "wide"}
    for name in result.summaries:
        assert len(result.samples[name]) == len(QA) + 1
        assert (result.run_dir / f"samples-{name}.jsonl").is_file()
    narrow = {s.id: s for s in result.samples["narrow"]}
    wide = {s.id: s for s in result.samples["wide"]}
    assert all(len(s.retrieved_ids) <= 1 for s in narrow.values())
    assert max(len(s.retrieved_ids) for s in wide.values()) > 1
    assert narrow["both"].scores["recall@4"] == 0.5 and wide["both"].scores["recall@4"] == 1.0
    narrow_recall = result.summaries["narrow"].values()["recall@4"]
    assert narrow_recall < result.summaries["wide"].values()["recall@4"]

    summary = json.loads((result.run_dir / "summary.json").read_text())
    params = summary["params"]["variants"]
    assert params["narrow"]["retrieval"]["top_k"] == 1
    assert params["wide"]["retrieval"]["top_k"] == 4
    assert params["baseline"]["retrieval"]["top_k"] == 4  # the app's (default) retrieval

    # the wide variant answers with the app's already built generator for it; the others share
    # the app's generator; each of the two was started once and closed once
    components = counted.components
    assert components is not None
    own = components.variant_generators["wide"]
    assert set(counted.calls) == {id(components.generator), id(own)}
    assert all(calls == ["start", "close"] for calls in counted.calls.values())


def test_experiment_true_needs_an_app_experiment(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    suite = write_suite(tmp_path, _app(write_config, None), experiment=True)
    result = CliRunner().invoke(app, ["eval", "run", str(suite), "--no-mlflow"])
    assert result.exit_code == 2
    lines = suite.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.startswith("experiment:"))
    assert f"{suite}:{line}:" in result.stderr
    assert "experiment  the app (" in result.stderr
    assert "has no experiment: section to evaluate" in result.stderr


def test_variant_names_clashing_with_the_app_experiment_are_located(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    suite = write_suite(
        tmp_path,
        _app(write_config),
        variants=[{"name": "top2", "retrieval": {"top_k": 2}}, {"name": "wide"}],
        experiment=True,
    )
    with pytest.raises(ConfigError) as info:
        load_checked_suite(suite)
    (issue,) = info.value.issues
    assert issue.path == "variants.1.name" and issue.file == str(suite)
    assert "'wide' is also a variant of the app's experiment" in issue.message

    variants = {"baseline": {}, "wide": {"retrieval": {"top_k": 4}}}
    app_file = write_config(
        "app2.yaml", embedder=HASHING, experiment={"name": "e", "variants": variants}
    )
    with pytest.raises(ConfigError) as info:
        load_checked_suite(write_suite(tmp_path, app_file, experiment=True))
    (issue,) = info.value.issues
    assert issue.path == "experiment" and "a variant named 'baseline'" in issue.message
    # without experiment: true the app's variant names do not matter to the suite
    assert load_checked_suite(write_suite(tmp_path, app_file))[1].loaded.app.experiment


def test_the_ab_test_suite_compares_the_ab_test_variants() -> None:
    loaded, app_spec = load_checked_suite(ROOT / "eval" / "ab-test.yaml")
    assert loaded.spec.experiment
    assert Path(app_spec.loaded.file).resolve() == ROOT / "configs" / "ab-test.yaml"
    experiment = app_spec.loaded.app.experiment
    assert experiment is not None and set(experiment.variants) == {"control", "wide"}
