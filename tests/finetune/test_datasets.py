"""Fine-tuning data: formats, file:line errors, RAG context, answer-only labels, split, packing."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.errors import DatasetError
from llmops.finetune import datasets as ds
from tests.tiny_models import build_tokenizer


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return build_tokenizer()


def _render(tokenizer):  # type: ignore[no-untyped-def]
    def render(messages: ds.Messages, generation_prompt: bool) -> str:
        return str(
            tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation_prompt
            )
        )

    return render


def test_a_line_that_does_not_parse_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "yo"}]}\n\n{"messages": [oops\n'
    )
    with pytest.raises(DatasetError, match=rf"{path}:3: invalid JSON"):
        ds.read_records(path, "chat")


@pytest.mark.parametrize(
    ("fmt", "line", "message"),
    [
        ("instruction", '{"instruction": "x"}', "'output' must be a non-empty string"),
        ("chat", '{"messages": [{"role": "user", "content": "x"}]}', "no assistant message"),
        ("chat", '{"messages": [{"role": "bot", "content": "x"}]}', r"messages\[0\] must be"),
        ("completion", '{"prompt": "x"}', "'completion' must be a non-empty string"),
        ("chat", "[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, fmt: str, line: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DatasetError, match=rf"{path}:1: .*{message}"):
        ds.read_records(path, fmt)


def test_labels_cover_only_the_answer_tokens(tokenizer) -> None:  # type: ignore[no-untyped-def]
    messages = [
        {"role": "user", "content": "How do I restore a backup?"},
        {"role": "assistant", "content": "Stop the server first."},
    ]
    segments = ds.chat_segments(messages, _render(tokenizer), "x:1")
    assert [answer for _, answer in segments] == [False, True]

    def tokenize(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    encoded = ds.encode(segments, tokenize, 512, None)
    prompt_len = len(tokenize(segments[0][0]))
    assert encoded.labels[:prompt_len] == [ds.IGNORE_INDEX] * prompt_len
    assert encoded.labels[prompt_len:] == encoded.input_ids[prompt_len:]
    answer = tokenizer.decode(encoded.labels[prompt_len:])
    assert answer == "Stop the server first.<|end|>\n"
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(encoded.input_ids) == full


def test_every_assistant_turn_of_a_conversation_is_learned(tokenizer) -> None:  # type: ignore[no-untyped-def]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "a?"},
        {"role": "assistant", "content": "A."},
        {"role": "user", "content": "b?"},
        {"role": "assistant", "content": "B."},
    ]
    segments = ds.chat_segments(messages, _render(tokenizer), "x:1")
    assert [text for text, answer in segments if answer] == ["A.<|end|>\n", "B.<|end|>\n"]


def test_rag_context_goes_into_the_prompt_not_the_labels(tmp_path: Path) -> None:
    path = tmp_path / "rag.jsonl"
    path.write_text(
        '{"instruction": "How much is a seat?", "output": "Twenty euros [1].", '
        '"context": ["A seat costs twenty euros.", "Backups run nightly."]}\n'
    )
    (record,) = ds.read_records(path, "instruction", context_header="Use the passages.")
    assert record.messages is not None
    user = record.messages[-2]["content"]
    assert user.startswith("Use the passages.\n\n[1] A seat costs twenty euros.\n[2] Backups")
    assert user.endswith("Question: How much is a seat?")
    assert record.messages[-1] == {"role": "assistant", "content": "Twenty euros [1]."}


def test_completion_text_blocks_and_prompt_completion(tmp_path: Path) -> None:
    text = tmp_path / "corpus.txt"
    text.write_text("first block\nstill first\n\n\nsecond block\n")
    records = ds.read_records(text, "completion")
    assert [r.segments for r in records] == [
        (("first block\nstill first", True),),
        (("second block", True),),
    ]
    assert records[1].where.endswith("corpus.txt:5")
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"prompt": "Q: x\\nA:", "completion": " y"}\n')
    (record,) = ds.read_records(jsonl, "completion")
    assert record.segments == (("Q: x\nA:", False), (" y", True))


def test_split_is_seeded_and_disjoint() -> None:
    records = [ds.Record(f"f:{i}") for i in range(20)]
    train, valid = ds.split(records, 0.25, seed=3)
    again = ds.split(records, 0.25, seed=3)
    assert (train, valid) == again
    assert len(valid) == 5 and not {r.where for r in train} & {r.where for r in valid}
    assert ds.split(records, 0.25, seed=4)[1] != valid


def test_packing_keeps_masks_with_their_tokens() -> None:
    a = ds.Encoded([1, 2, 3], [-100, 2, 3])
    b = ds.Encoded([4, 5, 6, 7], [-100, -100, 6, 7])
    packed = ds.pack([a, b], 4)
    assert [p.input_ids for p in packed] == [[1, 2, 3, 4], [5, 6, 7]]
    assert [p.labels for p in packed] == [[-100, 2, 3, -100], [-100, 6, 7]]
