"""ragas metrics for an eval run: the non-LLM context metrics (string similarity against
reference passages) and the LLM-judged ones, with any ``Generator`` as the judge.

- ``nonllm_context_precision`` / ``nonllm_context_recall``: ragas'
  NonLLMContextPrecisionWithReference and NonLLMContextRecall (retrieved chunks against the
  sample's reference ``contexts``).
- ``faithfulness`` (claims of the answer supported by the retrieved chunks),
  ``answer_relevancy`` (questions generated back from the answer, compared with the real one
  by the app's embedder), ``context_precision`` and ``context_recall`` (the retrieved chunks
  against the reference answer): ragas' LLM metrics, their prompts sent to the judge.

Every judge reply is cached on disk (SQLite) under (metric, prompt, model): a re-run makes no
judge call and gets the same scores. The judge is a ``llmops.protocols.Generator`` — any
registered backend, local or remote — passed in by the caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmops.deps import require
from llmops.errors import LLMOpsError
from llmops.evaluation.answer_metrics import Embed
from llmops.evaluation.datasets import Sample
from llmops.evaluation.scoring import Scores
from llmops.evaluation.suite import JUDGED, RAGAS_NON_LLM
from llmops.protocols import Generator
from llmops.types import Answer, GenerationOptions, GenerationRequest, Message, ScoredChunk


class JudgeCache:
    """Judge replies by (metric, prompt, model), in one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, metric TEXT, model TEXT, "
            "reply TEXT)"
        )
        self._lock = threading.Lock()

    @staticmethod
    def key(metric: str, prompt: str, model: str) -> str:
        return hashlib.sha256(json.dumps([metric, prompt, model]).encode()).hexdigest()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, metric: str, model: str, reply: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)", (key, metric, model, reply)
            )

    def close(self) -> None:
        self._db.close()


class Judge:
    """A generator answering ragas' prompts, through the cache; counts real calls."""

    def __init__(self, generator: Generator, model: str, cache: JudgeCache) -> None:
        self.generator, self.model, self.cache = generator, model, cache
        self.calls = 0
        self.cache_hits = 0

    async def reply(self, metric: str, prompt: str) -> str:
        key = self.cache.key(metric, prompt, self.model)
        cached = await asyncio.to_thread(self.cache.get, key)
        if cached is not None:
            self.cache_hits += 1
            return cached
        request = GenerationRequest(
            question=prompt,
            prompt=(Message("user", prompt),),
            options=GenerationOptions(temperature=0.0),
        )
        self.calls += 1
        text = (await self.generator.generate(request)).text
        await asyncio.to_thread(self.cache.put, key, metric, self.model, text)
        return text


def _ragas_llm(judge: Judge, metric: str) -> Any:
    """A ragas LLM (its legacy ``BaseRagasLLM`` interface) that asks ``judge``."""
    base = require("ragas.llms.base", "eval")
    outputs = require("langchain_core.outputs", "eval")
    # ragas retries a failing call up to 10 times with back-off up to a minute: a judge that
    # is down would stall the run for hours
    run_config = require("ragas.run_config", "eval").RunConfig(max_retries=2, max_wait=2)

    class JudgeLLM(base.BaseRagasLLM):  # type: ignore[name-defined]
        def generate_text(self, prompt: Any, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("the judge is async; ragas' async scoring calls it")

        async def agenerate_text(self, prompt: Any, *args: Any, **kwargs: Any) -> Any:
            text = await judge.reply(metric, prompt.to_string())
            return outputs.LLMResult(generations=[[outputs.Generation(text=text)]])

        def is_finished(self, response: Any) -> bool:
            return True

    return JudgeLLM(run_config=run_config)


def _ragas_embeddings(embed: Embed) -> Any:
    base = require("ragas.embeddings.base", "eval")

    class AppEmbeddings(base.BaseRagasEmbeddings):  # type: ignore[name-defined]
        def embed_query(self, text: str) -> list[float]:
            return [float(x) for x in embed([text])[0]]

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[float(x) for x in row] for row in embed(list(texts))]

        async def aembed_query(self, text: str) -> list[float]:
            return await asyncio.to_thread(self.embed_query, text)

        async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
            return await asyncio.to_thread(self.embed_documents, texts)

    return AppEmbeddings()


def _make_metrics(names: Sequence[str], judge: Judge | None, embed: Embed | None) -> dict[str, Any]:
    with warnings.catch_warnings():  # the classic metric classes warn about their new home
        warnings.simplefilter("ignore", DeprecationWarning)
        m = require("ragas.metrics", "eval")
        makers: dict[str, Callable[[], Any]] = {
            "nonllm_context_precision": m.NonLLMContextPrecisionWithReference,
            "nonllm_context_recall": m.NonLLMContextRecall,
        }
        if judge is not None:
            makers |= {
                "faithfulness": lambda: m.Faithfulness(llm=_ragas_llm(judge, "faithfulness")),
                "answer_relevancy": lambda: m.ResponseRelevancy(
                    llm=_ragas_llm(judge, "answer_relevancy"),
                    embeddings=_ragas_embeddings(embed) if embed else None,
                    strictness=1,
                ),
                "context_precision": lambda: m.LLMContextPrecisionWithReference(
                    llm=_ragas_llm(judge, "context_precision")
                ),
                "context_recall": lambda: m.LLMContextRecall(
                    llm=_ragas_llm(judge, "context_recall")
                ),
            }
        return {name: makers[name]() for name in names if name in makers}


_NEEDS_REFERENCE = {"context_precision", "context_recall"}
_NEEDS_REFERENCE_CONTEXTS = set(RAGAS_NON_LLM)


class RagasScorer:
    """Scores a suite's ragas metrics for each answered sample."""

    def __init__(
        self,
        metrics: Sequence[str],
        judge: Judge | None = None,
        embed: Embed | None = None,
    ) -> None:
        self.names = [m for m in metrics if m in (*RAGAS_NON_LLM, *JUDGED)]
        self.judge, self.embed = judge, embed
        self.metrics: dict[str, Any] = {}

    async def start(self) -> None:
        self.metrics = _make_metrics(self.names, self.judge, self.embed)
        if self.judge is not None:
            await self.judge.generator.start()

    def stats(self) -> dict[str, Any]:
        """The judge's model, real calls and cache hits (empty without a judge)."""
        if self.judge is None:
            return {}
        j = self.judge
        return {"model": j.model, "calls": j.calls, "cache_hits": j.cache_hits}

    async def close(self) -> None:
        if self.judge is not None:
            await self.judge.generator.close()
            self.judge.cache.close()

    async def score(self, sample: Sample, answer: Answer, hits: Sequence[ScoredChunk]) -> Scores:
        dataset_schema = require("ragas.dataset_schema", "eval")
        contexts = [h.chunk.text for h in hits]
        row = dataset_schema.SingleTurnSample(
            user_input=sample.question,
            response=answer.answer,
            retrieved_contexts=contexts,
            reference=sample.answers[0] if sample.answers else None,
            reference_contexts=list(sample.contexts) or None,
        )
        scores: Scores = {}
        for name, metric in self.metrics.items():
            scores[name] = await self._one(name, metric, row, sample, answer, contexts)
        return scores

    async def _one(
        self, name: str, metric: Any, row: Any, sample: Sample, answer: Answer, contexts: list[str]
    ) -> float | None:
        if not contexts or (name in _NEEDS_REFERENCE_CONTEXTS and not sample.contexts):
            return None
        if name in _NEEDS_REFERENCE and not (sample.answerable and sample.answers):
            return None
        if name in ("faithfulness", "answer_relevancy") and answer.abstained:
            return None  # an abstention makes no claim to check
        try:
            value = float(await metric.single_turn_ascore(row))
        except LLMOpsError:
            raise  # the judge is down or refused: the run must say so, not score None
        except Exception:  # a judge reply ragas cannot parse: no score rather than a crash
            return None
        return None if value != value else value  # NaN: ragas could not score it
