"""`llmops eval run SUITE` and `llmops eval compare A B` on the tiny test corpus: the real
query pipeline (hashing embedder, BM25, Chroma, extractive answers), no MLflow unless asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmops import prompts
from llmops.cli.main import app
from llmops.evaluation.run_folder import read_samples
from tests.conftest import HASHING, ConfigWriter
from tests.eval_suite_data import QA, write_suite
from tests.stubs.openai_server import Behaviour, serve

runner = CliRunner()


@pytest.fixture
def suite(tmp_path: Path, write_config: ConfigWriter) -> Path:
    config = write_config(embedder=HASHING, generator={"type": "extractive", "min_score": 0.3})
    return write_suite(tmp_path, config, variants=[{"name": "top1", "retrieval": {"top_k": 1}}])


def _run(*args: str) -> tuple[int, str, Path]:
    result = runner.invoke(app, ["eval", "run", *args, "--no-mlflow"])
    lines = [line for line in result.stdout.splitlines() if line.startswith("report: ")]
    assert lines, result.output
    return result.exit_code, result.stdout, Path(lines[0].removeprefix("report: ")).parent


def _samples(run_dir: Path, variant: str = "baseline") -> list[dict[str, object]]:
    path = run_dir / f"samples-{variant}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_samples_reports_and_a_table(suite: Path) -> None:
    code, out, run_dir = _run(str(suite))
    assert code == 0, out
    assert "mean [95% CI]" in out and "top1 vs baseline" in out and "PASS  hit@2 >= 0.5" in out
    samples = _samples(run_dir)
    assert sorted(s["id"] for s in samples) == sorted(q["id"] for q in QA)
    by_id = {s["id"]: s for s in samples}
    assert by_id["restore"]["retrieved_ids"][0] == "docs/backup.md"
    assert by_id["restore"]["scores"]["hit@2"] == 1.0
    assert by_id["flux"]["scores"]["token_f1"] is None  # no reference answer
    assert by_id["flux"]["scores"]["hit@2"] is None
    assert len(_samples(run_dir, "top1")) == len(QA)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["passed"] is True
    assert set(summary["variants"]) == {"baseline", "top1"}
    html = (run_dir / "report.html").read_text()
    assert html.count("<svg") >= 2 and "Worst samples" in html
    assert "## Metrics (mean [95% CI])" in (run_dir / "report.md").read_text()


def test_a_failing_gate_exits_1(tmp_path: Path, write_config: ConfigWriter) -> None:
    config = write_config(embedder=HASHING)
    suite = write_suite(tmp_path, config, gates=["exact_match >= 0.99", "p95_latency_ms <= 1e6"])
    code, out, run_dir = _run(str(suite))
    assert code == 1
    assert "FAIL  exact_match >= 0.99" in out and "PASS  p95_latency_ms <= 1e+06" in out
    assert json.loads((run_dir / "summary.json").read_text())["passed"] is False


def test_resume_answers_only_what_is_missing(suite: Path) -> None:
    _, _, run_dir = _run(str(suite))
    path = run_dir / "samples-baseline.jsonl"
    lines = path.read_text().splitlines()
    kept = [json.loads(line) for line in lines[:2]]
    for record in kept:  # a marker a re-answer would overwrite
        record["latency_ms"] = 123456.0
    # two finished samples and a line cut off mid-write by the "crash"
    path.write_text("".join(json.dumps(r) + "\n" for r in kept) + lines[2][:25])
    (run_dir / "samples-top1.jsonl").unlink()
    code, out, resumed = _run(str(suite), "--resume", str(run_dir))
    assert code == 0, out
    assert resumed == run_dir
    samples = read_samples(path)  # the cut-off line stays, on a line of its own, unread
    assert set(samples) == {q["id"] for q in QA}
    assert [samples[str(r["id"])].latency_ms for r in kept] == [123456.0, 123456.0]
    assert len(path.read_text().splitlines()) == len(QA) + 1
    assert len(_samples(run_dir, "top1")) == len(QA)


def test_resume_refuses_a_changed_suite(suite: Path) -> None:
    _, _, run_dir = _run(str(suite))
    suite.write_text(suite.read_text().replace("resamples: 200", "resamples: 300"))
    result = runner.invoke(app, ["eval", "run", str(suite), "--resume", str(run_dir)])
    assert result.exit_code == 1 and "other settings" in result.stderr


def test_compare_two_runs(suite: Path) -> None:
    _, _, first = _run(str(suite))
    _, _, second = _run(str(suite))
    result = runner.invoke(app, ["eval", "compare", str(first), str(second), "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    # the same app on the same data: identical scores, no difference, nothing significant
    assert body["token_f1"]["diff"] == 0.0 and body["token_f1"]["p_value"] == 1.0
    assert not any(c["significant"] for m, c in body.items() if m != "latency_ms")
    table = runner.invoke(app, ["eval", "compare", str(first), str(second), "--variant", "top1"])
    assert table.exit_code == 0 and "B − A" in table.stdout
    missing = runner.invoke(app, ["eval", "compare", str(first), str(second), "--variant", "x"])
    assert missing.exit_code == 1 and "no variant 'x'" in missing.stderr


def test_suite_errors_are_located(tmp_path: Path, write_config: ConfigWriter) -> None:
    config = write_config(embedder=HASHING)
    suite = write_suite(
        tmp_path,
        config,
        metrics=["hit@2", "recal@5"],
        gates=["bleu >= 0.5", "x is high"],
        variants=[{"name": "v", "generator": {"type": "extractiv"}}],
        judge={"model": "m"},
        concurency=3,
    )
    result = runner.invoke(app, ["eval", "run", str(suite)])
    assert result.exit_code == 2
    err = result.stderr
    assert f"{suite}:" in err
    assert "unknown metric 'recal@5'" in err
    assert "cannot read the gate 'x is high'" in err
    assert "concurency" in err
    assert "unknown generator type 'extractiv'" in err and "did you mean 'extractive'" in err
    assert "judge  needs a 'type'" in err


def test_llm_variant_with_its_own_prompt_tokens_and_cost(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    bundled = Path(prompts.__file__).parent / "templates" / "answer.v1.j2"
    (tmp_path / "prompts").mkdir()
    text = bundled.read_text().replace("You answer questions", "SHORT-PROMPT. You answer")
    (tmp_path / "prompts" / "answer.short.j2").write_text(text)
    behaviour = Behaviour(reply="Stop the server and run widgetron restore [1].")
    with serve(behaviour) as url:
        variant = {
            "name": "llm",
            "prompt": "answer.short",
            "generator": {"type": "openai_compat", "base_url": url, "model": "tiny"},
        }
        prices = {"prompt_per_1k": 1.0, "completion_per_1k": 2.0}
        config = write_config(embedder=HASHING)
        suite = write_suite(tmp_path, config, variants=[variant], prices=prices, gates=[])
        code, out, run_dir = _run(str(suite))
    assert code == 0, out
    assert len(behaviour.requests) == len(QA) + 1  # every question, and the untimed warm-up
    assert all("SHORT-PROMPT" in r["messages"][0]["content"] for r in behaviour.requests)
    llm = {s["id"]: s for s in _samples(run_dir, "llm")}
    restore = llm["restore"]
    assert restore["answer"] == behaviour.reply
    assert restore["completion_tokens"] == len(behaviour.reply.split())  # the stub's count
    expected = (restore["prompt_tokens"] * 1.0 + restore["completion_tokens"] * 2.0) / 1000
    assert restore["cost_usd"] == pytest.approx(expected) and expected > 0
    assert all(s["cost_usd"] == 0.0 for s in _samples(run_dir))  # extractive: no tokens
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["variants"]["llm"]["run"]["total_cost_usd"] > 0
    assert summary["params"]["variants"]["llm"]["prompt"] == "answer.short"
    assert summary["params"]["variants"]["llm"]["generator"] == "openai_compat:tiny"


def test_an_unknown_variant_prompt_is_a_located_error(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    config = write_config(embedder=HASHING)
    suite = write_suite(tmp_path, config, variants=[{"name": "v", "prompt": "answer.v9"}])
    result = runner.invoke(app, ["eval", "run", str(suite)])
    assert result.exit_code == 2
    assert "variants.0.prompt  prompt 'answer.v9' not found" in result.stderr
