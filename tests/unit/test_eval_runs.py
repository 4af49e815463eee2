"""Reading eval runs back (``llmops.evaluation.runs``): two real runs of the tiny corpus made
by the runner, listed with their gates and metrics, read in full, compared with the statistics
of ``llmops eval compare``; unfinished runs, runs from before ``gate_results``, and names that
are no run or lead out of the folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmops.errors import InvalidRequest, NotFound
from llmops.evaluation.run_folder import MANIFEST
from llmops.evaluation.runs import EvalRuns, compare_runs
from llmops.evaluation.suite import OPERATIONAL
from tests.conftest import write_corpus
from tests.eval_runs_data import APP, FAILING, PASSING, RUNS_DIR, two_runs


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[EvalRuns, list[Path]]:
    root = tmp_path_factory.mktemp("evalruns")
    write_corpus(root / "docs")
    app = root / "app.yaml"
    sources = [{"path": "docs", "include": ["**/*.md", "**/*.txt"]}]
    app.write_text(json.dumps({"name": "runs", "data_dir": "data", "sources": sources, **APP}))
    folders = two_runs(app)
    return EvalRuns(root / RUNS_DIR, RUNS_DIR), folders


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_listing_is_newest_first_with_gates_and_baseline_metrics(
    made: tuple[EvalRuns, list[Path]],
) -> None:
    runs, (first, second) = made
    listing = runs.listing()
    assert listing["exists"] and listing["folder"] == RUNS_DIR and listing["count"] == 2
    newest, oldest = listing["runs"]
    assert [newest["run"], oldest["run"]] == [second.name, first.name]
    assert newest["suite"] == "tiny" and newest["finished"] and newest["passed"] is False
    # each variant is held to every gate: 2 variants x 3 gates, the exact_match one fails
    assert newest["gates"] == {"passed": 4, "failed": 2}
    assert oldest["gates"] == {"passed": 4, "failed": 0} and oldest["passed"] is True
    assert newest["variants"] == ["baseline", "short"]
    baseline = _summary(second)["variants"]["baseline"]
    expected = {m: s["mean"] for m, s in baseline["metrics"].items() if m not in OPERATIONAL}
    assert newest["metrics"] == expected and "latency_ms" not in newest["metrics"]
    assert newest["p95_latency_ms"] == baseline["run"]["p95_latency_ms"]
    assert runs.listing(limit=1)["runs"] == [newest]


def test_a_run_in_full_has_each_gate_with_its_threshold_and_verdict(
    made: tuple[EvalRuns, list[Path]],
) -> None:
    runs, (_, second) = made
    run = runs.run(second.name)
    gates = {g["gate"]: g for g in run["variants"]["baseline"]["gates"]}
    assert list(gates) == [*PASSING, FAILING]
    failed = gates[FAILING]
    assert (failed["metric"], failed["op"], failed["threshold"]) == ("exact_match", ">=", 0.99)
    assert failed["passed"] is False and failed["value"] < 0.99
    hit = gates[PASSING[0]]
    metrics = run["variants"]["baseline"]["metrics"]
    assert hit["passed"] is True and hit["value"] == metrics["hit@2"]["mean"]
    assert metrics["hit@2"]["low"] <= metrics["hit@2"]["mean"] <= metrics["hit@2"]["high"]
    assert run["scored"][:2] == ["hit@2", "recall@2"] and "latency_ms" not in run["scored"]
    assert set(run["comparisons"]) == {"short"} and "token_f1" in run["comparisons"]["short"]
    assert run["params"]["dataset"] == "qa.jsonl" and "app_config" not in run["params"]
    assert run["report"] is True and runs.report(second.name) == second / "report.html"


def test_two_runs_compared_as_eval_compare_does(made: tuple[EvalRuns, list[Path]]) -> None:
    runs, (first, second) = made
    reply = runs.compare(first.name, second.name)
    expected = {m: c.as_dict() for m, c in compare_runs(first, second).items()}
    assert reply["metrics"] == expected and reply["variant"] == "baseline"
    assert reply["scored"] == [m for m in expected if m != "latency_ms"]
    # the paired means are the two runs' own means where both answered every sample
    recall = reply["metrics"]["recall@2"]
    first_recall = runs.run(first.name)["variants"]["baseline"]["metrics"]["recall@2"]
    assert recall["mean_a"] == pytest.approx(first_recall["mean"])
    assert recall["diff"] == pytest.approx(recall["mean_b"] - recall["mean_a"])
    # BM25 alone keeps answers the hybrid search's scores left under min_score
    assert reply["metrics"]["token_f1"]["diff"] > 0
    swapped = runs.compare(second.name, first.name, "short")["metrics"]["token_f1"]
    short = runs.compare(first.name, second.name, "short")["metrics"]["token_f1"]
    assert short["diff"] != 0 and swapped["diff"] == pytest.approx(-short["diff"])
    with pytest.raises(InvalidRequest, match="no variant 'wide'; it has: baseline, short"):
        runs.compare(first.name, second.name, "wide")


def test_unfinished_and_older_runs(made: tuple[EvalRuns, list[Path]], tmp_path: Path) -> None:
    runs, (first, _) = made
    folder = tmp_path / "runs"
    shutil.copytree(runs.folder, folder)
    (folder / "tiny-20990101-000000-000000").mkdir()
    (folder / "tiny-20990101-000000-000000" / MANIFEST).write_text('{"suite": "tiny"}')
    older = folder / first.name / "summary.json"
    summary = json.loads(older.read_text())
    del summary["gate_results"]  # written before summaries kept them: the lines only
    older.write_text(json.dumps(summary))
    copied = EvalRuns(folder)
    listing = copied.listing()
    assert listing["count"] == 3
    pending = listing["runs"][0]  # started last
    assert pending["run"] == "tiny-20990101-000000-000000" and pending["suite"] == "tiny"
    assert pending["finished"] is False and pending["gates"] is None
    by_name = {r["run"]: r for r in listing["runs"]}
    with pytest.raises(NotFound, match=r"not finished .* --resume"):
        copied.run("tiny-20990101-000000-000000")
    assert by_name[first.name]["gates"] == {"passed": 4, "failed": 0}
    lines = copied.run(first.name)["variants"]["baseline"]["gates"]
    assert [g["passed"] for g in lines] == [True, True]
    assert lines[0]["gate"].startswith("PASS  hit@2 >= 0.5  (got ")


def test_names_that_are_no_run_are_refused(made: tuple[EvalRuns, list[Path]]) -> None:
    runs, (first, _) = made
    for name in ("..", "../runs", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(InvalidRequest, match="not a run name"):
            runs.run(name)
    with pytest.raises(NotFound, match="no eval run 'tiny-1' in runs"):
        runs.run("tiny-1")
    with pytest.raises(NotFound, match="no eval run"):
        runs.compare(first.name, "tiny-1")


def test_a_link_out_of_the_runs_folder_is_refused(
    made: tuple[EvalRuns, list[Path]], tmp_path: Path
) -> None:
    _, (first, _) = made
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "elsewhere").symlink_to(first, target_is_directory=True)
    linked = EvalRuns(folder)
    with pytest.raises(InvalidRequest, match="symbolic link"):
        linked.run("elsewhere")
    with pytest.raises(InvalidRequest, match="symbolic link"):
        linked.report("elsewhere")
    copied = folder / first.name  # a run whose report is a link to a file elsewhere
    shutil.copytree(first, copied)
    (copied / "report.html").unlink()
    (tmp_path / "secret.html").write_text("not a report")
    (copied / "report.html").symlink_to(tmp_path / "secret.html")
    with pytest.raises(NotFound, match=r"has no report\.html"):
        linked.report(first.name)
    assert [run["run"] for run in linked.listing()["runs"]] == [first.name]


def test_a_missing_runs_folder_lists_nothing(tmp_path: Path) -> None:
    listing = EvalRuns(tmp_path / "nowhere", "../nowhere").listing()
    assert listing == {"folder": "../nowhere", "exists": False, "count": 0, "runs": []}
