"""Training examples from instruction JSONL, chat JSONL and completion text, rendered through
the chat template into (text, is_answer) segments and tokenized with the loss on the answer
tokens only (labels -100 elsewhere). No torch or transformers import: the tokenizer and the
chat template arrive as callables, so the masking is testable on its own."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llmops.errors import DatasetError
from llmops.jsonl import json_objects

IGNORE_INDEX = -100  # the label transformers' losses skip
Messages = list[dict[str, str]]
Render = Callable[[Messages, bool], str]  # (messages, add_generation_prompt) -> text


class Tokenize(Protocol):
    def __call__(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class Record:
    """One example as read: chat messages, or completion segments; ``where`` is file:line."""

    where: str
    messages: Messages | None = None
    segments: tuple[tuple[str, bool], ...] = ()  # completion: (text, is_answer)


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]

    def as_dict(self) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids, "labels": self.labels}


def read_records(
    path: Path, fmt: str, *, system_prompt: str | None = None, context_header: str = ""
) -> list[Record]:
    """Every example of ``path``; a line that does not parse raises DatasetError naming the
    file and line."""
    if fmt == "completion" and path.suffix not in (".jsonl", ".json"):
        return _text_blocks(path)
    records = []
    for where, row in json_objects(path):
        if fmt == "completion":
            records.append(Record(where, segments=_completion(row, where)))
            continue
        messages = _instruction(row, where, system_prompt) if fmt == "instruction" else None
        messages = messages or _chat(row, where)
        context = row.get("context")
        if context is not None:
            messages = with_context(messages, _passages(context, where), context_header)
        records.append(Record(where, messages=messages))
    return records


def _text_blocks(path: Path) -> list[Record]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
    records, line = [], 1
    for block in text.split("\n\n"):
        if block.strip():
            start = line + (len(block) - len(block.lstrip("\n")))
            records.append(Record(f"{path}:{start}", segments=((block.strip("\n"), True),)))
        line += block.count("\n") + 2
    return records


def _text(row: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise DatasetError(f"{where}: '{key}' must be a non-empty string")
    return value


def _completion(row: dict[str, Any], where: str) -> tuple[tuple[str, bool], ...]:
    if "text" in row:
        return ((_text(row, "text", where), True),)
    if "prompt" in row or "completion" in row:
        return ((_text(row, "prompt", where), False), (_text(row, "completion", where), True))
    raise DatasetError(f"{where}: a completion line needs 'text', or 'prompt' and 'completion'")


def _instruction(row: dict[str, Any], where: str, system_prompt: str | None) -> Messages:
    instruction = _text(row, "instruction", where)
    extra = _text(row, "input", where, required=False)
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": user}, _answer(row, "output", where)]


def _answer(row: dict[str, Any], key: str, where: str) -> dict[str, str]:
    return {"role": "assistant", "content": _text(row, key, where)}


def _chat(row: dict[str, Any], where: str) -> Messages:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"{where}: a chat line needs 'messages', a non-empty list")
    out = []
    for i, message in enumerate(messages):
        ok = isinstance(message, dict) and isinstance(message.get("content"), str)
        if not ok or message.get("role") not in ("system", "user", "assistant"):
            raise DatasetError(
                f"{where}: messages[{i}] must be {{role: system|user|assistant, content: string}}"
            )
        out.append({"role": message["role"], "content": message["content"]})
    if not any(m["role"] == "assistant" for m in out):
        raise DatasetError(f"{where}: no assistant message to learn from")
    return out


def _passages(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise DatasetError(f"{where}: 'context' must be a list of passage strings")
    return value


def with_context(messages: Messages, passages: Sequence[str], header: str) -> Messages:
    """The messages with the passages, numbered [1], [2], ..., put into the user message before
    the last answer, so the adapter learns to answer from retrieved passages."""
    last_answer = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    users = [i for i, m in enumerate(messages[:last_answer]) if m["role"] == "user"]
    if not users or not passages:
        return messages
    numbered = "\n".join(f"[{n}] {p}" for n, p in enumerate(passages, start=1))
    target = users[-1]
    content = f"{header}\n\n{numbered}\n\nQuestion: {messages[target]['content']}"
    return [{**m, "content": content} if i == target else m for i, m in enumerate(messages)]


def chat_segments(messages: Messages, render: Render, where: str) -> list[tuple[str, bool]]:
    """The rendered conversation cut into prompt and answer pieces: every assistant turn (the
    text the template adds for it, end-of-turn marker included) is an answer."""
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(messages[:i], True)
        upto = render(messages[: i + 1], False)
        if not (prompt.startswith(done) and upto.startswith(prompt)):
            raise DatasetError(
                f"{where}: the chat template does not render a conversation as a growing "
                "prefix, so the answer tokens cannot be found; use a template that does"
            )
        segments += [(prompt[len(done) :], False), (upto[len(prompt) :], True)]
        done = upto
    return [(text, answer) for text, answer in segments if text]


def encode(
    segments: Sequence[tuple[str, bool]], tokenize: Tokenize, max_length: int, eos: int | None
) -> Encoded:
    """Token ids and labels: answer tokens keep their id as label, prompt tokens get -100.
    ``eos`` (completion data) is appended as an answer token. Truncated to ``max_length``."""
    ids: list[int] = []
    labels: list[int] = []
    for text, answer in segments:
        piece = tokenize(text)
        ids += piece
        labels += piece if answer else [IGNORE_INDEX] * len(piece)
    if eos is not None:
        ids.append(eos)
        labels.append(eos)
    return Encoded(ids[:max_length], labels[:max_length])


def pack(examples: Sequence[Encoded], max_length: int) -> list[Encoded]:
    """Examples concatenated and cut into blocks of ``max_length`` tokens (the last may be
    shorter); masks travel with their tokens."""
    ids = [t for e in examples for t in e.input_ids]
    labels = [t for e in examples for t in e.labels]
    return [
        Encoded(ids[i : i + max_length], labels[i : i + max_length])
        for i in range(0, len(ids), max_length)
    ]


def split(records: Sequence[Record], ratio: float, seed: int) -> tuple[list[Record], list[Record]]:
    """(train, validation): a seeded shuffle, then ``ratio`` of the records held out (at least
    one when the ratio is above 0 and there are two or more records)."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    held = round(len(records) * ratio)
    if ratio > 0 and len(records) > 1:
        held = min(max(held, 1), len(records) - 1)
    valid = sorted(order[:held])
    train = sorted(order[held:])
    return [records[i] for i in train], [records[i] for i in valid]


def has_answer(example: Encoded) -> bool:
    return any(label != IGNORE_INDEX for label in example.labels)
