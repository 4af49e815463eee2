"""A rule-based LLM judge behind the OpenAI chat-completions API, for ragas' judged metrics.

It reads the ragas prompt it is sent (the instruction, then ``input: {...}`` JSON at the end)
and answers in the JSON shape that prompt asks for, deciding by word overlap: a statement is
supported by a context when most of its content words occur there. Deterministic, so scores
can be checked; ``calls`` counts the requests it answered.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request

from tests.stubs.openai_server import serve_app

_WORD = re.compile(r"[a-z0-9]{4,}")


@dataclass
class JudgeStub:
    model: str = "judge-tiny"
    calls: int = 0
    prompts: list[str] = field(default_factory=list)


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def supported(statement: str, context: str) -> int:
    words = _words(statement)
    return int(bool(words) and len(words & _words(context)) / len(words) >= 0.6)


def _sentences(text: str) -> list[str]:
    """Sentences with content words (a citation marker such as "[2]" makes no claim)."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if _words(s)]


def judge(prompt: str) -> dict[str, Any]:
    data = json.loads(prompt.rsplit("input: ", 1)[1].rsplit("Output:", 1)[0])
    if prompt.startswith("Given a question and an answer, analyze the complexity"):
        return {"statements": _sentences(data["answer"])}
    if prompt.startswith("Your task is to judge the faithfulness"):
        verdicts = [
            {"statement": s, "reason": "word overlap", "verdict": supported(s, data["context"])}
            for s in data["statements"]
        ]
        return {"statements": verdicts}
    if prompt.startswith("Generate a question for the given answer"):
        vague = "could not find" in data["response"].lower()
        return {"question": data["response"], "noncommittal": int(vague)}
    if prompt.startswith("Given question, answer and context verify"):
        return {"reason": "word overlap", "verdict": supported(data["answer"], data["context"])}
    if prompt.startswith("Given a context, and an answer, analyze each sentence"):
        rows = [
            {"statement": s, "reason": "word overlap", "attributed": supported(s, data["context"])}
            for s in _sentences(data["answer"])
        ]
        return {"classifications": rows}
    raise ValueError(f"unknown ragas prompt: {prompt[:80]!r}")


def make_app(stub: JudgeStub) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> dict[str, Any]:
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        stub.calls += 1
        stub.prompts.append(prompt)
        reply = json.dumps(judge(prompt))
        return {
            "id": "chatcmpl-judge",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": len(prompt.split()),
                "completion_tokens": 10,
                "total_tokens": len(prompt.split()) + 10,
            },
        }

    return app


@contextmanager
def serve_judge(stub: JudgeStub) -> Iterator[str]:
    """Yields the base URL (ending in /v1)."""
    with serve_app(make_app(stub)) as root:
        yield f"{root}/v1"
