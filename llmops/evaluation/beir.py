"""Read a BEIR dataset folder (https://github.com/beir-cellar/beir):

    corpus.jsonl        {"_id": "4983", "title": "...", "text": "...", "metadata": {...}}
    queries.jsonl       {"_id": "1", "text": "..."}
    qrels/test.tsv      query-id <TAB> corpus-id <TAB> score   (a header line, then one per pair)

Only the queries named in the chosen qrels split are evaluated. Every problem is a
``DatasetError`` naming the file and line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.errors import DatasetError
from llmops.jsonl import json_objects, text_lines

LAYOUT = "corpus.jsonl, queries.jsonl and qrels/<split>.tsv"


@dataclass(frozen=True)
class BeirDocument:
    id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """Title, a newline, then the text: what gets indexed (BEIR's convention)."""
        return f"{self.title}\n{self.text}" if self.title.strip() else self.text


@dataclass(frozen=True)
class BeirFolder:
    """A checked BEIR folder: every file of ``split`` exists (contents are read lazily)."""

    root: Path
    split: str

    @classmethod
    def open(cls, root: str | Path, split: str = "test") -> BeirFolder:
        folder = cls(Path(root), split)
        if not folder.root.is_dir():
            raise DatasetError(f"{folder.root}: not a folder; a BEIR folder holds {LAYOUT}")
        for path in (folder.corpus, folder.queries):
            if not path.is_file():
                raise DatasetError(f"{path}: file not found; a BEIR folder holds {LAYOUT}")
        if not folder.qrels.is_file():
            found = sorted(p.stem for p in (folder.root / "qrels").glob("*.tsv"))
            have = f"splits here: {', '.join(found)}" if found else "no qrels/*.tsv here"
            raise DatasetError(f"{folder.qrels}: file not found ({have}); pick one with --split")
        return folder

    @property
    def corpus(self) -> Path:
        return self.root / "corpus.jsonl"

    @property
    def queries(self) -> Path:
        return self.root / "queries.jsonl"

    @property
    def qrels(self) -> Path:
        return self.root / "qrels" / f"{self.split}.tsv"

    def documents(self) -> Iterator[BeirDocument]:
        """The corpus in file order; a repeated id is an error."""
        seen: set[str] = set()
        for where, record in json_objects(self.corpus):
            doc_id = _string(record, "_id", where)
            if doc_id in seen:
                raise DatasetError(f"{where}: the id '{doc_id}' appears twice in the corpus")
            seen.add(doc_id)
            # BEIR corpora without titles hold "" (or null) there
            title = _string(record, "title", where, empty=True) if record.get("title") else ""
            yield BeirDocument(doc_id, title, _string(record, "text", where, empty=True))

    def read_queries(self, wanted: set[str]) -> dict[str, str]:
        """``{query id: text}`` for the ids in ``wanted``; one missing from the file is an error."""
        found = {}
        for where, record in json_objects(self.queries):
            query_id = _string(record, "_id", where)
            if query_id in wanted:
                found[query_id] = _string(record, "text", where)
        missing = sorted(wanted - found.keys())
        if missing:
            raise DatasetError(
                f"{self.queries}: {len(missing)} queries of {self.qrels.name} are not in the "
                f"file (e.g. '{missing[0]}'); qrels and queries must come from one dataset"
            )
        return found

    def read_qrels(self) -> dict[str, dict[str, int]]:
        """``{query id: {document id: relevance}}`` in file order (the header is optional)."""
        qrels: dict[str, dict[str, int]] = {}
        for number, line in text_lines(self.qrels):
            fields = line.rstrip("\r\n").split("\t")
            if not line.strip() or (number == 1 and fields[0] == "query-id"):
                continue
            query_id, doc_id, score = _qrel(fields, f"{self.qrels}:{number}")
            qrels.setdefault(query_id, {})[doc_id] = score
        if not qrels:
            raise DatasetError(f"{self.qrels}: no judgements (expected {_QREL_SHAPE})")
        return qrels


_QREL_SHAPE = "query-id<TAB>corpus-id<TAB>integer score"


def _qrel(fields: list[str], where: str) -> tuple[str, str, int]:
    if len(fields) != 3 or not fields[0] or not fields[1]:
        raise DatasetError(f"{where}: expected {_QREL_SHAPE}, got {len(fields)} field(s)")
    try:
        return fields[0], fields[1], int(fields[2])
    except ValueError:
        raise DatasetError(f"{where}: score '{fields[2]}' is not an integer") from None


def _string(record: dict[str, Any], key: str, where: str, empty: bool = False) -> str:
    """A text field; BEIR ids are strings, but integer ids are read as their digits."""
    value = record.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and key == "_id":
        return str(value)
    if not isinstance(value, str) or (not empty and not value.strip()):
        shown = "missing" if value is None else f"{type(value).__name__} {value!r}"[:60]
        kind = "a string" if empty else "a non-empty string"
        raise DatasetError(f"{where}: field '{key}' must be {kind} ({shown})")
    return value
