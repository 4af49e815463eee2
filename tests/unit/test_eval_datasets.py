"""Dataset readers: the llmops JSONL schema, SQuAD JSON, CLAP-NQ JSONL and BEIR folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops.errors import DatasetError
from llmops.evaluation.datasets import load_dataset, read_jsonl, write_jsonl
from tests.beir_data import write_beir


def _jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_jsonl_schema_defaults_and_round_trip(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "qa.jsonl",
        [
            {"id": "a", "question": "How?", "answer": "Like this.", "context_ids": ["d1"]},
            {"question": "Unknown?", "answerable": False, "metadata": {"topic": "x"}},
        ],
    )
    samples = load_dataset(path)
    assert samples[0].answers == ("Like this.",) and samples[0].answerable
    assert samples[1].id == "q2" and not samples[1].answerable
    assert samples[1].metadata == {"topic": "x"}
    write_jsonl(samples, tmp_path / "copy.jsonl")
    assert read_jsonl(tmp_path / "copy.jsonl") == samples


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"question": ""}, "question must be a non-empty string"),
        ({"question": "q", "answers": [1]}, "'answers' must be a string or a list"),
        ({"question": "q", "context": ["x"]}, "unknown field 'context'"),
        ({"question": "q", "answerable": "yes"}, "'answerable' must be true or false"),
    ],
)
def test_jsonl_errors_name_file_and_line(
    tmp_path: Path, record: dict[str, object], message: str
) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", [{"question": "fine"}, record])
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(path)
    assert f"{path}:2" in str(info.value)


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"id": 1, "question": "a"}, {"id": "1", "question": "b"}])
    with pytest.raises(DatasetError, match="appears twice"):
        load_dataset(path)


def test_squad_v2_reader(tmp_path: Path) -> None:
    data = {
        "data": [
            {
                "title": "Pumps",
                "paragraphs": [
                    {
                        "context": "Bleed the pump before the first start.",
                        "qas": [
                            {
                                "id": "s1",
                                "question": "What first?",
                                "answers": [
                                    {"text": "Bleed the pump", "answer_start": 0},
                                    {"text": "Bleed the pump", "answer_start": 0},
                                ],
                            },
                            {
                                "id": "s2",
                                "question": "Colour?",
                                "answers": [],
                                "is_impossible": True,
                            },
                        ],
                    }
                ],
            }
        ]
    }
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data))
    first, second = load_dataset(path)
    assert first.answers == ("Bleed the pump",) and first.contexts[0].startswith("Bleed")
    assert not second.answerable and second.answers == () and second.contexts == ()


def test_clapnq_reader_marks_empty_answers_unanswerable(tmp_path: Path) -> None:
    passage = {"title": "T", "text": "Gold passage.", "sentences": ["Gold passage."]}
    path = _jsonl(
        tmp_path / "clap.jsonl",
        [
            {"id": 12, "input": "q one", "passages": [passage], "output": [{"answer": "A."}]},
            {"id": "13", "input": "q two", "passages": [passage], "output": [{"answer": ""}]},
        ],
    )
    one, two = load_dataset(path)
    assert one.id == "12" and one.answers == ("A.",) and one.context_ids == ("clapnq/12",)
    assert one.contexts == ("Gold passage.",)
    assert not two.answerable and two.context_ids == ()


def test_beir_folder_reader(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "beir")
    samples = load_dataset(folder)
    assert samples[0].question == "volcano lava eruption"
    assert samples[0].context_ids == ("volc-1", "hike-2")  # the relevant documents only
    assert load_dataset(folder, limit=1) == samples[:1]
