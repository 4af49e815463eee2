"""Evaluation datasets: one sample schema and readers for the formats people have.

The llmops JSONL schema, one object per line::

    {"id": "q1", "question": "...", "answers": ["..."], "context_ids": ["guide/03-x.md"],
     "contexts": ["a reference passage ..."], "answerable": true, "metadata": {...}}

Only ``question`` is required. ``answers`` may also be one string (``answer``); ``answerable``
defaults to "has an answer". Readers for other formats produce the same ``Sample``:

- ``squad``: SQuAD-style JSON (``data[].paragraphs[].qas[]``, ``is_impossible`` in v2);
- ``clapnq``: CLAP-NQ-style JSONL (``input``, ``passages[]``, ``output[].answer``);
- ``beir``: a BEIR folder (queries + qrels; the relevant documents become ``context_ids``).

Every problem is a ``DatasetError`` naming the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops.errors import DatasetError
from llmops.evaluation.beir import BeirFolder
from llmops.jsonl import json_objects

FORMATS = ("jsonl", "squad", "clapnq", "beir")


@dataclass(frozen=True)
class Sample:
    """One evaluation question with what a good answer and a good retrieval look like."""

    id: str
    question: str
    answers: tuple[str, ...] = ()
    context_ids: tuple[str, ...] = ()
    contexts: tuple[str, ...] = ()
    answerable: bool = True
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answers": list(self.answers),
            "context_ids": list(self.context_ids),
            "contexts": list(self.contexts),
            "answerable": self.answerable,
            "metadata": dict(self.metadata),
        }


def load_dataset(
    path: str | Path, format: str = "auto", split: str = "test", limit: int | None = None
) -> list[Sample]:
    """Read a dataset in ``format`` (``auto``: a folder is BEIR, ``.json`` SQuAD, a JSONL file
    whose first record has ``input`` and ``passages`` CLAP-NQ, else the llmops schema)."""
    path = Path(path)
    chosen = _detect(path) if format == "auto" else format
    if chosen not in FORMATS:
        raise DatasetError(
            f"{path}: unknown format '{format}'; allowed: auto, {', '.join(FORMATS)}"
        )
    samples = read_beir(path, split) if chosen == "beir" else _READERS[chosen](path)
    _check_unique(samples, path)
    if not samples:
        raise DatasetError(f"{path}: the dataset holds no questions")
    return samples[:limit] if limit else samples


def _detect(path: Path) -> str:
    if path.is_dir():
        return "beir"
    if path.suffix == ".json":
        return "squad"
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    first = next((record for _, record in json_objects(path)), {})
    return "clapnq" if "input" in first and "passages" in first else "jsonl"


def _check_unique(samples: list[Sample], path: Path) -> None:
    seen: set[str] = set()
    for sample in samples:
        if sample.id in seen:
            raise DatasetError(f"{path}: the id '{sample.id}' appears twice; ids must be unique")
        seen.add(sample.id)


def read_jsonl(path: Path) -> list[Sample]:
    """The llmops schema (see the module docstring)."""
    samples = []
    for number, (where, record) in enumerate(json_objects(path), 1):
        allowed = {*_JSONL_KEYS, "answer"}
        unknown = sorted(set(record) - allowed)
        if unknown:
            raise DatasetError(
                f"{where}: unknown field '{unknown[0]}'; allowed: {', '.join(sorted(allowed))}"
            )
        answers = _strings(record.get("answers", record.get("answer")), "answers", where)
        answerable = record.get("answerable", bool(answers))
        if not isinstance(answerable, bool):
            raise DatasetError(f"{where}: field 'answerable' must be true or false")
        metadata = record.get("metadata", {})
        if not isinstance(metadata, dict):
            raise DatasetError(f"{where}: field 'metadata' must be an object")
        samples.append(
            Sample(
                id=_text_id(record.get("id", f"q{number}"), where),
                question=_question(record.get("question"), where),
                answers=answers,
                context_ids=_strings(record.get("context_ids"), "context_ids", where),
                contexts=_strings(record.get("contexts"), "contexts", where),
                answerable=answerable,
                metadata=metadata,
            )
        )
    return samples


_JSONL_KEYS = ("id", "question", "answers", "context_ids", "contexts", "answerable", "metadata")


def read_squad(path: Path) -> list[Sample]:
    """SQuAD v1/v2 JSON: each paragraph's ``context`` is the reference passage; an
    ``is_impossible`` question (v2) is unanswerable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable SQuAD JSON file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(f"{path}: expected SQuAD JSON: {{'data': [{{'paragraphs': [...]}}]}}")
    samples = []
    for a, article in enumerate(data["data"]):
        title = str(article.get("title", ""))
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = paragraph.get("context", "")
            for qa in paragraph.get("qas", []):
                answers = tuple(
                    dict.fromkeys(str(x.get("text", "")) for x in qa.get("answers", []))
                )
                impossible = bool(qa.get("is_impossible", False))
                samples.append(
                    Sample(
                        id=_text_id(qa.get("id"), where),
                        question=_question(qa.get("question"), where),
                        answers=() if impossible else answers,
                        contexts=(context,) if context and not impossible else (),
                        answerable=not impossible and bool(answers),
                        metadata={"title": title} if title else {},
                    )
                )
    return samples


def read_clapnq(path: Path) -> list[Sample]:
    """CLAP-NQ JSONL: ``input`` is the question, the gold passage's title + text the reference
    context (its id ``clapnq/<question id>``), ``output[].answer`` the references; an empty or
    null answer marks an unanswerable question (its passage is then not a reference)."""
    samples = []
    for where, record in json_objects(path):
        answers = tuple(
            str(o["answer"]).strip()
            for o in record.get("output") or []
            if isinstance(o, dict) and o.get("answer")
        )
        passages = [p for p in record.get("passages") or [] if isinstance(p, dict)]
        qid = _text_id(record.get("id"), where)
        samples.append(
            Sample(
                id=qid,
                question=_question(record.get("input"), where),
                answers=answers,
                context_ids=(f"clapnq/{qid}",) if answers else (),
                contexts=tuple(p.get("text", "") for p in passages) if answers else (),
                answerable=bool(answers),
                metadata={"title": passages[0].get("title", "")} if passages else {},
            )
        )
    return samples


def read_beir(path: Path, split: str = "test") -> list[Sample]:
    """BEIR queries of ``split`` with their relevant documents as reference ids (no answers:
    retrieval metrics only)."""
    folder = BeirFolder.open(path, split)
    qrels = folder.read_qrels()
    queries = folder.read_queries(set(qrels))
    return [
        Sample(
            id=qid,
            question=queries[qid],
            context_ids=tuple(doc for doc, rel in judged.items() if rel > 0),
            answerable=True,
        )
        for qid, judged in qrels.items()
    ]


def _question(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: the question must be a non-empty string")
    return value.strip()


def _text_id(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        raise DatasetError(f"{where}: 'id' must be a non-empty string or integer")
    return str(value)


def _strings(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DatasetError(f"{where}: field '{key}' must be a string or a list of strings")
    return tuple(value)


def write_jsonl(samples: list[Sample], path: Path) -> None:
    """Write samples in the llmops schema (what the other readers convert to)."""
    lines = (json.dumps(s.as_dict(), ensure_ascii=False) + "\n" for s in samples)
    path.write_text("".join(lines), encoding="utf-8")


_READERS: dict[str, Callable[[Path], list[Sample]]] = {
    "jsonl": read_jsonl,
    "squad": read_squad,
    "clapnq": read_clapnq,
}
