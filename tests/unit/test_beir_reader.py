"""The BEIR folder reader: contents, and errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.errors import DatasetError
from llmops.evaluation.beir import BeirFolder
from tests.beir_data import CORPUS, QRELS, QUERIES, jsonl, write_beir


def test_reads_corpus_queries_and_graded_qrels(tmp_path: Path) -> None:
    folder = BeirFolder.open(write_beir(tmp_path))
    documents = list(folder.documents())
    assert [d.id for d in documents] == [r["_id"] for r in CORPUS]
    assert documents[0].full_text == f"{CORPUS[0]['title']}\n{CORPUS[0]['text']}"
    assert documents[6].full_text == CORPUS[6]["text"]  # no title: the text alone
    qrels = folder.read_qrels()
    assert qrels["q1"] == {"volc-1": 2, "hike-2": 1}
    assert sum(len(j) for j in qrels.values()) == len(QRELS)
    assert folder.read_queries({"q1", "q4"}) == {"q1": QUERIES[0]["text"], "q4": QUERIES[3]["text"]}


def test_qrels_header_is_optional(tmp_path: Path) -> None:
    folder = BeirFolder.open(write_beir(tmp_path, qrels="q1\tvolc-1\t1\n\nq2\tbake-3\t2\n"))
    assert folder.read_qrels() == {"q1": {"volc-1": 1}, "q2": {"bake-3": 2}}


def test_missing_folder_file_or_split(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"not a folder; a BEIR folder holds corpus\.jsonl"):
        BeirFolder.open(tmp_path / "nope")
    root = write_beir(tmp_path / "beir")
    with pytest.raises(DatasetError, match=r"dev.tsv: file not found \(splits here: test\)"):
        BeirFolder.open(root, split="dev")
    (root / "queries.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"queries\.jsonl: file not found"):
        BeirFolder.open(root)


@pytest.mark.parametrize(
    ("corpus", "message"),
    [
        (jsonl(CORPUS[:2]) + "{oops\n", r"corpus.jsonl:3: invalid JSON"),
        (
            jsonl(CORPUS[:1]) + "\n" + jsonl([{"title": "t", "text": "x"}]),
            r"corpus.jsonl:3: .*'_id'",
        ),
        (jsonl([{"_id": "a", "text": 5}]), r"corpus.jsonl:1: field 'text' must be a string"),
        (jsonl([{"_id": "a", "text": "x"}, {"_id": "a", "text": "y"}]), r":2: the id 'a' appears"),
        ("[1, 2]\n", r"corpus.jsonl:1: expected a JSON object, got list"),
    ],
)
def test_malformed_corpus_lines(tmp_path: Path, corpus: str, message: str) -> None:
    folder = BeirFolder.open(write_beir(tmp_path, corpus=corpus))
    with pytest.raises(DatasetError, match=message):
        list(folder.documents())


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("query-id\tcorpus-id\tscore\nq1\tvolc-1\n", r"test.tsv:2: expected query-id<TAB>"),
        ("q1\tvolc-1\thigh\n", r"test.tsv:1: score 'high' is not an integer"),
        ("query-id\tcorpus-id\tscore\n", r"test.tsv: no judgements"),
    ],
)
def test_malformed_qrels(tmp_path: Path, qrels: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        BeirFolder.open(write_beir(tmp_path, qrels=qrels)).read_qrels()


def test_queries_named_by_qrels_must_exist(tmp_path: Path) -> None:
    folder = BeirFolder.open(write_beir(tmp_path, queries=jsonl(QUERIES[1:])))
    with pytest.raises(
        DatasetError, match=r"1 queries of test.tsv are not in the file \(e.g. 'q1'\)"
    ):
        folder.read_queries({"q1", "q2"})
