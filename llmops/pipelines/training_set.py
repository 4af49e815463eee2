"""A fine-tuning set from production: answered requests with positive feedback, read from the
request log and written as chat JSONL (the ``chat`` format of ``llmops finetune``).

One line per example, newest first::

    {"messages": [{"role": "user", "content": QUESTION},
                  {"role": "assistant", "content": ANSWER}],
     "context": [PASSAGE, ...], "request_id": "..."}

``context`` (RAG-style examples) holds the texts of the passages the answer was given from;
the fine-tuning reader puts them into the user turn under the job's ``context_header``, so
the adapter learns to answer from passages. Only rows whose question and answer the log kept
in clear are used: a row stored hashed or redacted stays out (the log's privacy setting
holds for training data too). Examples are deduplicated on the normalized (question, answer).
A passage no longer in the index (re-ingested since) is left out of ``context``; an example
none of whose passages is left is skipped, since an answer without its evidence would teach
the adapter to answer from memory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from llmops.build import Components
from llmops.config.monitoring import RequestLogConfig
from llmops.errors import InvalidRequest
from llmops.monitoring.request_log import RequestLog

PassageLookup = Callable[[Sequence[str]], Mapping[str, str]]
"""Chunk ids → their texts; an id the index no longer holds is left out."""

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class ExportReport:
    """What ``export_from_log`` wrote and why the other rows stayed out."""

    path: Path
    written: int = 0
    rows: int = 0  # rows of the log in the period
    below_feedback: int = 0  # no feedback, or less than min_feedback
    abstained: int = 0
    not_in_clear: int = 0  # question or answer stored hashed or redacted
    no_answer: int = 0  # logged before the log kept answers, or an empty answer
    duplicates: int = 0
    missing_passages: int = 0  # retrieved chunk ids no longer in the index
    no_passages_left: int = 0  # examples skipped: none of their passages is in the index
    with_context: int = 0  # examples written with a ``context``

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


@dataclass(frozen=True)
class _Example:
    request_id: str
    question: str
    answer: str
    retrieved_ids: tuple[str, ...]


def export_from_log(
    log: RequestLog | Path,
    out: Path,
    *,
    min_feedback: float = 1.0,
    since: float | datetime | None = None,
    include_context: bool = True,
    passages: PassageLookup | None = None,
    system_prompt: str | None = None,
) -> ExportReport:
    """Write the rated examples of ``log`` (a request log, or its SQLite file) to ``out``.

    ``min_feedback``: the lowest feedback score that counts as positive (thumbs up is 1).
    ``since``: only requests from then on (epoch seconds or a datetime). With
    ``include_context``, ``passages`` looks up the retrieved chunks' texts (required then).
    """
    if include_context and passages is None:
        raise ValueError("include_context needs a passages lookup (chunk ids → texts)")
    if isinstance(log, Path):
        log = RequestLog(log, RequestLogConfig())
    start = since.timestamp() if isinstance(since, datetime) else since
    report = ExportReport(out)
    examples = _examples(log.iter_rows(start), min_feedback, report)
    texts = passages(_all_ids(examples)) if include_context and passages is not None else None
    lines = [_line(e, texts, system_prompt, report) for e in examples]
    _write_lines(out, [line for line in lines if line is not None])
    report.written = sum(line is not None for line in lines)
    return report


def _examples(
    rows: Iterable[Mapping[str, Any]], min_feedback: float, report: ExportReport
) -> list[_Example]:
    """Usable rows, newest first, the first of each normalized (question, answer) kept."""
    candidates = []
    for row in rows:
        report.rows += 1
        example = _usable(row, min_feedback, report)
        if example is not None:
            candidates.append(example)
    seen: set[tuple[str, str]] = set()
    kept = []
    for example in reversed(candidates):
        key = (_normalized(example.question), _normalized(example.answer))
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        kept.append(example)
    return kept


def _usable(row: Mapping[str, Any], min_feedback: float, report: ExportReport) -> _Example | None:
    feedback = row.get("feedback")
    if feedback is None or feedback < min_feedback:
        report.below_feedback += 1
        return None
    if row.get("abstained"):
        report.abstained += 1
        return None
    question, answer = row.get("question"), row.get("answer")
    if not _in_clear(question, row.get("question_mode"), row.get("query_chars")):
        report.not_in_clear += 1
        return None
    if row.get("answer_mode") not in (None, "keep"):
        report.not_in_clear += 1
        return None
    if not isinstance(answer, str) or not answer.strip():
        report.no_answer += 1
        return None
    assert isinstance(question, str)
    ids = tuple(str(i) for i in row.get("retrieved_ids") or ())
    return _Example(str(row["request_id"]), question, answer, ids)


def _in_clear(text: Any, mode: Any, chars: Any) -> bool:
    if not isinstance(text, str) or not text.strip():
        return False  # redacted
    if mode is not None:
        return bool(mode == "keep")
    # a row written before the log recorded modes: a SHA-256 stands in for a text of another
    # length (query_chars keeps the length of the original question)
    return not (_SHA256.fullmatch(text) and chars != len(text))


def _normalized(text: str) -> str:
    return " ".join(text.casefold().split())


def _all_ids(examples: Sequence[_Example]) -> list[str]:
    return list(dict.fromkeys(i for e in examples for i in e.retrieved_ids))


def _line(
    example: _Example,
    texts: Mapping[str, str] | None,
    system_prompt: str | None,
    report: ExportReport,
) -> dict[str, Any] | None:
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    line: dict[str, Any] = {
        "messages": [
            *system,
            {"role": "user", "content": example.question},
            {"role": "assistant", "content": example.answer},
        ]
    }
    if texts is not None and example.retrieved_ids:
        found = [texts[i] for i in example.retrieved_ids if i in texts]
        report.missing_passages += len(example.retrieved_ids) - len(found)
        if not found:
            report.no_passages_left += 1
            return None
        line["context"] = found
        report.with_context += 1
    line["request_id"] = example.request_id
    return line


def _write_lines(out: Path, lines: Sequence[dict[str, Any]]) -> None:
    """All lines or none: a file half written by a crash would look like a smaller dataset."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with partial.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    partial.replace(out)


def index_passages(components: Components) -> PassageLookup:
    """Chunk texts from the app's sparse index, which keeps every chunk's text in memory
    (the vector store's contract has no read by id). The components must be started."""
    sparse = components.sparse
    if sparse is None:
        raise InvalidRequest(
            "exporting passages needs the sparse index, which keeps the chunk texts "
            "(sparse: {type: bm25}, then re-ingest); or export without context (--no-context)"
        )

    def lookup(ids: Sequence[str]) -> dict[str, str]:
        active = components.records.active()
        if active is None or not ids:
            return {}
        return {cid: chunk.text for cid, chunk in sparse.chunks(active.collection, ids).items()}

    return lookup
