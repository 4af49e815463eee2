"""llmops eval retrieval | run | compare"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import typer
from rich.progress import (
    Progress,
)
from rich.table import Table

from llmops.cli import eval_run_cmd
from llmops.cli.common import StageBars, console, progress_bars, run
from llmops.config.yaml_source import dump_yaml
from llmops.pipelines.eval_retrieval import MODES, BeirReport, evaluate_beir
from llmops.pipelines.tune_embedder import EmbedderTuning, tune_beir_with_embedder
from llmops.pipelines.tune_retrieval import (
    METRIC,
    BeirTuning,
    TuneReport,
    chosen_sections,
    tune_beir,
    write_sections,
)
from llmops.pipelines.tune_suite import tune_suite
from llmops.rag.embedders.training import EmbedderTraining

app = typer.Typer(
    help="Evaluate against labelled datasets: `eval retrieval` scores search on a BEIR folder; "
    "`eval run SUITE` runs an eval suite (answers, metrics, gates, report, MLflow); "
    "`eval compare RUN_A RUN_B` tests what changed between two runs; "
    "`eval log RUN_DIR` logs a run to MLflow after its tracking failed.",
    no_args_is_help=True,
)
app.command("run")(eval_run_cmd.run_cmd)
app.command("compare")(eval_run_cmd.compare_cmd)
app.command("log")(eval_run_cmd.log_cmd)


def _bars(progress: Progress) -> StageBars:
    """One bar for the ingestion (documents), then one per mode (queries)."""

    def unit(stage: str) -> str:
        if stage == "ingest":
            return "documents"
        return "model" if stage.startswith("fine-tune") else "queries"

    return StageBars(progress, unit)


def _table(report: BeirReport, title: str) -> Table:
    names = list(next(iter(report.metrics.values())))
    table = Table("mode", *names, "p50 ms", title=title)
    for mode, values in report.metrics.items():
        cells = [f"{values[n]:.4f}" for n in names]
        table.add_row(mode, *cells, f"{report.latency_ms[mode]:.1f}")
    ingest = report.ingest
    table.caption = (
        f"{report.queries} queries, {report.documents} documents in "
        f"{ingest.chunks_total} chunks, indexed in {ingest.seconds:.0f}s"
    )
    if ingest.oversize_chunks:
        table.caption += (
            f"; {ingest.oversize_chunks} chunks exceed the embedder's {ingest.token_limit} "
            "tokens (dense search sees their beginning, as in BEIR)"
        )
    return table


@app.command()
def retrieval(
    beir: Path | None = typer.Option(
        None, "--beir", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."
    ),
    suite: Path | None = typer.Option(
        None,
        "--suite",
        help="With --tune, instead of --beir: tune on an eval suite's labelled questions (their "
        "context_ids), searching the suite's app and its own index.",
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="App config whose chunker, embedder, sparse, reranker and retrieval settings are "
        "used (its sources and data_dir are not). Default: an app's defaults, one chunk per "
        "document.",
    ),
    split: str = typer.Option(
        "test", "--split", help="Which qrels/<split>.tsv to evaluate (with --tune: to tune on)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Only the first N judged queries (a quick check)."
    ),
    modes: list[str] | None = typer.Option(
        None,
        "--mode",
        "-m",
        help=f"One of {', '.join(MODES)}; repeat for several. Default: dense, bm25, hybrid "
        "and rerank (when the config has a reranker); hybrid_rrf and hybrid_weighted compare "
        "the two fusions on the same index.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help='Print one JSON object: {"dense": {"ndcg@10": ...}, ...}.'
    ),
    tune: bool = typer.Option(
        False,
        "--tune",
        help="Instead of scoring modes, tune mode, fusion, weights and candidate depth on the "
        "--split queries; the choice is tested against the config's settings on the test "
        "split (or, tuning on test, on a held-out third) and printed as a retrieval: section.",
    ),
    write: Path | None = typer.Option(
        None,
        "--write",
        help="With --tune: put the chosen retrieval: section (and embedder: section, when the "
        "fine-tuned embedder won) into this YAML config (the rest of its settings are kept, "
        "its comments are not).",
    ),
    train_embedder: Path | None = typer.Option(
        None,
        "--train-embedder",
        help="With --tune --beir: also fine-tune the config's sentence-transformers embedder "
        "on three quarters of the --split queries' labelled documents, save it in this folder, "
        "index the corpus again with it, and choose between the two embedders (with every "
        "setting) on the other quarter. Minutes of CPU per thousand queries.",
    ),
    epochs: int = typer.Option(
        EmbedderTraining.epochs,
        "--epochs",
        min=1,
        help="With --train-embedder: passes over the pairs.",
    ),
) -> None:
    """Score retrieval on a BEIR dataset: nDCG@10, recall@10, recall@100, MRR@10.

    The corpus is indexed into a temporary folder (removed afterwards) by
    the normal ingestion, then every judged query of the split is searched
    in each mode: dense (vectors), bm25 (keywords), hybrid (both, fused)
    and rerank (the app's search re-scored by its cross-encoder). Metrics
    follow trec_eval, as BEIR reports them (see docs/evaluation.md).

    A BEIR folder (SciFact, NFCorpus, ... from the BEIR benchmark):

      corpus.jsonl     {"_id": "4983", "title": "...", "text": "..."}
      queries.jsonl    {"_id": "1", "text": "..."}
      qrels/test.tsv   query-id<TAB>corpus-id<TAB>score, after a header

    Examples:

      llmops eval retrieval --beir ../shared/datasets/scifact

      llmops eval retrieval --beir scifact -c app.yaml -m hybrid --limit 50

      llmops eval retrieval --beir scifact -c app.yaml --tune --split train --write app.yaml

      llmops eval retrieval --beir scifact -c app.yaml --tune --split train \
          --train-embedder models/scifact-embedder --write app.yaml

      llmops eval retrieval --suite eval/quickstart.yaml --tune
    """
    if write is not None and not tune:
        raise typer.BadParameter("--write needs --tune", param_hint="--write")
    if train_embedder is not None and (not tune or beir is None):
        hint = "--train-embedder needs --tune --beir FOLDER"
        raise typer.BadParameter(hint, param_hint="--train-embedder")
    if suite is not None and not tune:
        hint = "--suite needs --tune (`llmops eval run SUITE` scores a suite)"
        raise typer.BadParameter(hint, param_hint="--suite")
    if (beir is None) == (suite is None):
        raise typer.BadParameter("give one of --beir FOLDER and --suite SUITE", param_hint="--beir")
    if suite is not None:
        _tune(lambda bars: tune_suite(suite, bars), suite.stem, as_json, write)
        return
    assert beir is not None
    if tune:

        def tuning(bars: StageBars) -> TuneReport:
            if train_embedder is None:
                return tune_beir(beir, config, split, limit=limit, progress=bars)
            embedder = EmbedderTuning(train_embedder, EmbedderTraining(epochs=epochs))
            source = BeirTuning(beir, config, split, limit=limit)
            return tune_beir_with_embedder(source, embedder, bars)

        _tune(tuning, beir.name, as_json, write)
        return
    with progress_bars() as progress:
        report = run(lambda: evaluate_beir(beir, config, modes, split, limit, _bars(progress)))
    if as_json:
        typer.echo(json.dumps(report.metrics, indent=2))
    else:
        console.print(_table(report, f"{beir.name} ({split})"))


def _tune(
    tuning: Callable[[StageBars], TuneReport], name: str, as_json: bool, out: Path | None
) -> None:
    with progress_bars() as progress:
        report = run(lambda: tuning(_bars(progress)))
    sections = chosen_sections(report)
    if out is not None:
        run(lambda: write_sections(out, sections))
    section = dump_yaml([sections])
    if as_json:
        body = {
            "chosen": report.yaml_section,
            "embedder": report.embedder_section,
            "tuned_on": report.tuned_on,
            "evaluated_on": report.evaluated_on,
            METRIC: report.comparison.as_dict(),
            "best_trial_on_tuning_queries": report.tuning_gain.as_dict(),
        }
        if report.embedder_gain is not None:
            body["embedder_on_tuning_queries"] = report.embedder_gain.as_dict()
        typer.echo(json.dumps(body, indent=2))
        return
    console.print(_tune_table(report, f"{name}: tuned on {report.tuned_on}"))
    wrote = f"wrote {'these sections' if len(sections) > 1 else 'this section'} into {out}:"
    typer.echo(section if out is None else f"{wrote}\n{section}")


def _tune_table(report: TuneReport, title: str) -> Table:
    c = report.comparison
    table = Table("settings", f"{METRIC} on {report.evaluated_on}", title=title)
    table.add_row("the config's", f"{c.mean_a:.4f}")
    table.add_row("tuned", f"{c.mean_b:.4f}")
    table.add_row("gain (95% CI)", f"{c.diff:+.4f} [{c.low:+.4f}, {c.high:+.4f}], p={c.p_text}")
    g = report.tuning_gain
    kept = "" if g.significant and g.diff > 0 else "; not significant, so the config's is kept"
    caption = (
        f"best of {len(report.trials)} settings on the tuning queries: {g.mean_b:.4f}, "
        f"{g.diff:+.4f} over the config's (p={g.p_text}){kept}"
    )
    e = report.embedder_gain
    if e is not None:
        used = "used" if report.embedder_section is not None else "not used"
        caption = (
            f"fine-tuned embedder with the config's setting on the tuning queries: "
            f"{e.mean_b:.4f} against {e.mean_a:.4f} ({e.diff:+.4f}), so it is {used}; {caption}"
        )
    table.caption = caption
    return table
