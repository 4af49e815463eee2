"""Suite specs: the shipped quickstart suite and QA set are valid; mistakes are located."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from llmops.errors import ConfigError
from llmops.evaluation.datasets import load_dataset
from llmops.evaluation.suite import load_suite
from llmops.pipelines.eval_run import load_checked_suite

ROOT = Path(__file__).resolve().parents[2]


def test_the_quickstart_suite_and_its_dataset_are_valid() -> None:
    loaded, app = load_checked_suite(ROOT / "eval" / "quickstart.yaml")
    assert app.loaded.app.name == "quickstart"
    samples = load_dataset(loaded.path(loaded.spec.dataset.path))
    assert len(samples) >= 20 and any(not s.answerable for s in samples)
    for sample in samples:  # every reference id names a page of the guide
        for doc in sample.context_ids:
            assert (ROOT / "datasets" / doc).is_file(), doc
        assert sample.answerable == bool(sample.answers)


def _write(tmp_path: Path, **data: object) -> Path:
    (tmp_path / "qa.jsonl").write_text('{"question": "q"}\n')
    (tmp_path / "app.yaml").write_text("name: app\n")
    base = {"name": "s", "app": "app.yaml", "dataset": {"path": "qa.jsonl"}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**base, **data}, sort_keys=False))
    return path


def test_problems_are_reported_together_with_their_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        metrics=["faithfulness", "token_f1"],
        gates=["recall@5 >= 0.9"],
        variants=[{"name": "baseline"}],
    )
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    text = str(info.value)
    assert "variant names must be unique and not 'baseline'" in text
    with pytest.raises(ConfigError) as info:
        load_suite(_write(tmp_path, metrics=["faithfulness"], gates=["recall@5 >= 0.9"]))
    issues = {i.path: i for i in info.value.issues}
    assert "needs a judge" in issues["metrics.0"].message
    assert "'recall@5' is not measured" in issues["gates.0"].message
    assert issues["gates.0"].line == 8 and issues["gates.0"].file == str(tmp_path / "suite.yaml")


def test_retrieval_overrides_are_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, variants=[{"name": "v", "retrieval": {"top_k": 0, "mod": "x"}}])
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    assert "variants.0.retrieval" in str(info.value)


def test_an_alias_bomb_in_a_suite_is_refused_at_once(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    path = _write(tmp_path)
    path.write_text(path.read_text() + "\n".join(levels) + "\n")
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    assert time.perf_counter() - started < 1.0
    (issue,) = info.value.issues
    assert issue.path == "a5" and "at most 100,000 are allowed" in issue.message


def test_gates_on_a_baseline_belong_to_model_apps() -> None:
    from llmops.evaluation.gates import check, parse_gate

    gate = parse_gate("roc_auc >= production - 0.01")
    assert (gate.baseline, gate.threshold, str(gate)) == (
        "production",
        -0.01,
        "roc_auc >= production - 0.01",
    )
    [worse] = check([gate], {"roc_auc": 0.90}, {"production": {"roc_auc": 0.92}})
    [first] = check([gate], {"roc_auc": 0.90})
    assert not worse.passed and first.passed and "no production value yet" in first.describe()
