"""Offline evaluation runs: a suite's dataset answered by the app (and each variant of it)
through the normal query pipeline, every answer scored, per-sample results written as they
finish (``samples-<variant>.jsonl``: a crashed run resumes where it stopped), then summaries
with confidence intervals, paired comparisons against the baseline, gates, reports and an
MLflow run.

    result = run_suite("eval/quickstart.yaml")
    result.passed, result.summaries["baseline"].values()["token_f1"]
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmops import tracing
from llmops.build import AppSpec, Components, build, check_component, load_config, make_generator
from llmops.config import SourceMap, issue_at
from llmops.errors import ComponentError, ConfigError, ConfigIssue, LLMOpsError
from llmops.evaluation.datasets import Sample, load_dataset
from llmops.evaluation.gates import check
from llmops.evaluation.results import EvalRun
from llmops.evaluation.run_folder import (
    SampleWriter,
    new_run_dir,
    read_samples,
    reopen_run_dir,
)
from llmops.evaluation.scoring import SampleResult, ranking_ids, score_sample
from llmops.evaluation.suite import BASELINE, LoadedSuite, SuiteSpec, load_suite
from llmops.evaluation.summary import compare_results, summarize_results
from llmops.pipelines.eval_answering import Answering, Ask, InProcess
from llmops.pipelines.eval_scorers import ExtraScorer, make_scorers
from llmops.pipelines.experiment import Experiment
from llmops.pipelines.ingest import Ingestion
from llmops.pipelines.query import QueryPipeline
from llmops.prompts import PromptLibrary, find_prompt_dirs
from llmops.protocols import Generator
from llmops.types import Answer, ScoredChunk

Progress = Callable[[str, int, int], None]
"""Called with (variant, samples done, samples in the dataset)."""


@dataclass
class _Variant:
    name: str
    pipeline: QueryPipeline

    @property
    def generator(self) -> Generator:
        return self.pipeline.generator

    @property
    def params(self) -> dict[str, Any]:
        return {
            "prompt": self.pipeline.prompt,
            "generator": self.generator.name,
            "retrieval": self.pipeline.retrieval.model_dump(mode="json", by_alias=True),
        }


def load_checked_suite(path: str | Path) -> tuple[LoadedSuite, AppSpec]:
    """The suite with its component sections checked, and the app it evaluates."""
    loaded = load_suite(path, _component_issues)
    app_spec = load_config(loaded.path(loaded.spec.app))
    library = PromptLibrary(find_prompt_dirs(app_spec.base_dir, app_spec.loaded.app.prompts_dir))
    issues = []
    for i, variant in enumerate(loaded.spec.variants):
        try:
            library.check(variant.prompt or app_spec.loaded.app.prompt)
        except ComponentError as exc:
            loc = ("variants", i, "prompt")
            hint = "prompts are looked up as the app's are: its prompts/ folder, then the bundled"
            issues.append(issue_at(loaded.source_map, loaded.file, loc, str(exc), hint))
    if loaded.spec.experiment:
        issues += _experiment_issues(loaded, app_spec)
    if issues:
        raise ConfigError(issues)
    return loaded, app_spec


def _experiment_issues(loaded: LoadedSuite, app_spec: AppSpec) -> list[ConfigIssue]:
    """``experiment: true`` needs an app experiment whose variant names are free in the suite."""
    experiment = app_spec.loaded.app.experiment
    smap, file, app_file = loaded.source_map, loaded.file, loaded.spec.app
    if experiment is None:
        hint = "add an experiment: section to the app, or remove experiment: true from the suite"
        message = f"the app ({app_file}) has no experiment: section to evaluate"
        return [issue_at(smap, file, ("experiment",), message, hint)]
    issues = []
    if BASELINE in experiment.variants:
        hint = "rename that variant in the app's experiment: section"
        message = f"the app's experiment has a variant named '{BASELINE}', the app as configured"
        issues.append(issue_at(smap, file, ("experiment",), message, hint))
    for i, variant in enumerate(loaded.spec.variants):
        if variant.name in experiment.variants:
            hint = "rename the suite's variant (the app's experiment variants keep their names)"
            message = (
                f"'{variant.name}' is also a variant of the app's experiment ({app_file}), "
                "which experiment: true evaluates"
            )
            issues.append(issue_at(smap, file, ("variants", i, "name"), message, hint))
    return issues


def _component_issues(
    data: dict[str, Any], smap: SourceMap, file: str, base_dir: Path
) -> list[ConfigIssue]:
    """A variant's generator and the judge are generator sections: checked like an app's."""
    variants = data.get("variants")
    sections: list[tuple[tuple[str | int, ...], Any]] = [
        (("variants", i, "generator"), v["generator"])
        for i, v in enumerate(variants if isinstance(variants, list) else [])
        if isinstance(v, dict) and v.get("generator") is not None
    ]
    if data.get("judge") is not None:
        sections.append((("judge",), data["judge"]))
    issues: list[ConfigIssue] = []
    for loc, raw in sections:
        if not isinstance(raw, dict):
            continue  # the suite's schema reports a section that is not a mapping
        if not isinstance(raw.get("type"), str):
            hint = "a registered generator type, e.g. openai_compat (see `llmops components`)"
            issues.append(issue_at(smap, file, loc, "needs a 'type'", hint))
        else:
            issues += check_component("generator", raw, loc, smap, file)[1]
    return issues


def run_suite(
    path: str | Path,
    resume: Path | None = None,
    tracking_uri: str | None = None,
    progress: Progress | None = None,
    track: bool = True,
    answering: Answering | None = None,
) -> EvalRun:
    """Run a suite (or finish the unfinished run in ``resume``); see the module docstring.
    ``answering`` says where the questions are answered (default: in this process)."""
    loaded, app_spec = load_checked_suite(path)
    spec = loaded.spec
    dataset = load_dataset(
        loaded.path(spec.dataset.path), spec.dataset.format, spec.dataset.split, spec.dataset.limit
    )
    run_dir = _run_dir(loaded, app_spec, dataset, resume)
    components = build(app_spec)
    components.start()
    attributes: tracing.Attributes = {
        "llmops.eval.suite": spec.name,
        "llmops.eval.samples": len(dataset),
    }
    tracer = components.tracing.tracer
    try:
        with tracing.span(tracer, "eval", attributes):
            answered = _answer_all(
                loaded, app_spec, components, dataset, run_dir, progress, answering or InProcess()
            )
            samples, params = asyncio.run(answered)
    finally:
        components.close()
    result = finish(loaded, run_dir, samples, params)
    if track:
        from llmops.evaluation.tracking import log_run

        result.mlflow_run_id = log_run(result, tracking_uri, components.data_dir)
    return result


def finish(
    loaded: LoadedSuite,
    run_dir: Path,
    samples: dict[str, list[SampleResult]],
    params: dict[str, Any],
) -> EvalRun:
    """Summaries, comparisons, gates and the reports of answered samples."""
    from llmops.evaluation.report import write_reports

    spec = loaded.spec
    summaries = {
        name: summarize_results(name, results, spec.metrics, spec.resamples, spec.seed)
        for name, results in samples.items()
    }
    base = samples[BASELINE]
    comparisons = {
        name: compare_results(base, results, spec.metrics, spec.resamples, spec.seed)
        for name, results in samples.items()
        if name != BASELINE
    }
    gates = {name: check(spec.parsed_gates(), s.values()) for name, s in summaries.items()}
    result = EvalRun(run_dir, loaded, samples, summaries, comparisons, gates, params)
    summary = {
        "suite": spec.name,
        "passed": result.passed,
        "params": params,
        "variants": {n: s.as_dict() for n, s in summaries.items()},
        "comparisons": {
            n: {m: c.as_dict() for m, c in cs.items()} for n, cs in comparisons.items()
        },
        "gates": {n: [g.describe() for g in gs] for n, gs in gates.items()},
        "gate_results": {n: [g.as_dict() for g in gs] for n, gs in gates.items()},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    write_reports(result, run_dir)
    return result


def _run_dir(
    loaded: LoadedSuite, app_spec: AppSpec, dataset: Sequence[Sample], resume: Path | None
) -> Path:
    parts = [
        loaded.fingerprint,
        _config_text(app_spec),
        json.dumps([s.as_dict() for s in dataset], sort_keys=True),
    ]
    fingerprint = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    if resume is not None:
        return reopen_run_dir(resume, fingerprint)
    manifest = {
        "suite": loaded.spec.name,
        "suite_file": str(Path(loaded.file).resolve()),
        "fingerprint": fingerprint,
    }
    return new_run_dir(loaded.path(loaded.spec.results_dir), loaded.spec.name, manifest)


# answering -----------------------------------------------------------------------------------
async def _answer_all(
    loaded: LoadedSuite,
    app_spec: AppSpec,
    components: Components,
    dataset: Sequence[Sample],
    run_dir: Path,
    progress: Progress | None,
    answering: Answering,
) -> tuple[dict[str, list[SampleResult]], dict[str, Any]]:
    await asyncio.to_thread(Ingestion(components).run)  # incremental: cheap when up to date
    variants = build_variants(loaded, app_spec, components)
    scorers = make_scorers(loaded, components)
    started: list[Generator] = []
    try:
        for generator in {id(v.generator): v.generator for v in variants}.values():
            await generator.start()
            started.append(generator)
        for scorer in scorers:
            await scorer.start()
        samples = {}
        for variant in variants:
            samples[variant.name] = await _answer_variant(
                loaded.spec, variant, components, dataset, run_dir, scorers, progress, answering
            )
    finally:
        answering.close()
        for scorer in scorers:
            await scorer.close()
        for generator in started:
            await generator.close()
    params = {"app_fingerprint": components.fingerprint, **_params(loaded, app_spec, variants)}
    for scorer in scorers:
        if scorer.stats():
            params["judge"] = scorer.stats()
    return samples, params


def build_variants(
    loaded: LoadedSuite, app_spec: AppSpec, components: Components
) -> list[_Variant]:
    """The baseline, the suite's variants and (``experiment: true``) the app's experiment
    variants, built as the live service builds them, with the generators already built."""
    app = app_spec.loaded.app
    variants = [_Variant(BASELINE, QueryPipeline(components, app.retrieval, app.prompt))]
    for i, spec in enumerate(loaded.spec.variants):
        generator = None
        if spec.generator is not None:
            loc = ("variants", i, "generator")
            resolved, issues = check_component(
                "generator", spec.generator, loc, loaded.source_map, loaded.file
            )
            if resolved is None:
                raise ConfigError(issues)
            generator = make_generator(resolved, loaded.base_dir)
        retrieval = spec.retrieval_for(app.retrieval)
        pipeline = QueryPipeline(components, retrieval, spec.prompt or app.prompt, None, generator)
        variants.append(_Variant(spec.name, pipeline))
    if loaded.spec.experiment and app.experiment is not None:  # (checked on loading)
        live = Experiment(app.experiment, components, app.retrieval, app.prompt, None)
        variants += [_Variant(name, pipeline) for name, pipeline in live.pipelines.items()]
    return variants


def _config_text(app_spec: AppSpec) -> str:
    """The app's config data, canonical: what the run's fingerprint and config hash cover."""
    return json.dumps(app_spec.loaded.data, sort_keys=True, default=str)


def _params(loaded: LoadedSuite, app_spec: AppSpec, variants: Sequence[_Variant]) -> dict[str, Any]:
    return {
        "suite": loaded.spec.name,
        "suite_hash": loaded.fingerprint,
        "config_hash": hashlib.sha256(_config_text(app_spec).encode()).hexdigest()[:12],
        "app_config": str(app_spec.loaded.file),
        "embedder": app_spec.components["embedder"].config.model_dump(mode="json"),
        "dataset": loaded.spec.dataset.path,
        "variants": {v.name: v.params for v in variants},
    }


async def _answer_variant(
    spec: SuiteSpec,
    variant: _Variant,
    components: Components,
    dataset: Sequence[Sample],
    run_dir: Path,
    scorers: Sequence[ExtraScorer],
    progress: Progress | None,
    answering: Answering,
) -> list[SampleResult]:
    path = run_dir / f"samples-{variant.name}.jsonl"
    done = read_samples(path)
    todo = [s for s in dataset if s.id not in done]
    notify = progress or (lambda name, count, total: None)
    notify(variant.name, len(dataset) - len(todo), len(dataset))
    writer, gate = SampleWriter(path), asyncio.Semaphore(spec.concurrency)
    embed = components.embedder.embed_documents
    ask = await answering.asker(variant.name, variant.pipeline, todo)
    if todo:  # one-off set-up (lazy model init, the scorers' first imports): untimed
        await _answer_one(spec, variant, ask, todo[0], embed, ())

    async def one(sample: Sample) -> None:
        async with gate:
            result = await _answer_one(spec, variant, ask, sample, embed, scorers)
        await asyncio.to_thread(writer.write, result)
        done[sample.id] = result
        notify(variant.name, len(done), len(dataset))

    await asyncio.gather(*(one(s) for s in todo))
    return [done[s.id] for s in dataset]


async def _answer_one(
    spec: SuiteSpec,
    variant: _Variant,
    ask: Ask,
    sample: Sample,
    embed: Callable[[list[str]], np.ndarray],
    scorers: Sequence[ExtraScorer],
) -> SampleResult:
    result = SampleResult(sample.id, sample.question, sample.answerable)
    attributes: tracing.Attributes = {
        "llmops.eval.variant": variant.name,
        "llmops.eval.sample": sample.id,
    }
    tracer = variant.pipeline.tracer
    with tracing.span(tracer, "eval.sample", attributes) as span:
        try:
            answer, hits = await ask(sample)
        except LLMOpsError as exc:
            tracing.error(span, exc)
            result.error = str(exc)
            return result
    _fill(result, answer, hits, spec)
    result.scores = await asyncio.to_thread(
        score_sample,
        sample,
        answer.answer,
        answer.abstained,
        result.retrieved_ids,
        spec.metrics,
        embed,
    )
    for scorer in scorers:
        result.scores.update(await scorer.score(sample, answer, hits))
    return result


def _fill(
    result: SampleResult, answer: Answer, hits: Sequence[ScoredChunk], spec: SuiteSpec
) -> None:
    result.answer = answer.answer
    result.abstained = answer.abstained
    result.retrieved_ids = ranking_ids([h.chunk.document_id for h in hits])
    result.latency_ms = answer.latency_ms
    result.prompt_tokens = answer.usage.prompt_tokens
    result.completion_tokens = answer.usage.completion_tokens
    if spec.prices is not None:
        result.cost_usd = (
            answer.usage.prompt_tokens * spec.prices.prompt_per_1k
            + answer.usage.completion_tokens * spec.prices.completion_per_1k
        ) / 1000
