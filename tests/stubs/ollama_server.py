"""A local server following Ollama's published REST API, for backend tests.

``POST /api/chat`` streams by default, as Ollama does when ``stream`` is absent: NDJSON lines
``{"model", "created_at", "message": {"role": "assistant", "content"}, "done": false}``, then a
final line with ``"done": true``, ``done_reason`` ("stop", or "length" when ``num_predict`` cut
the answer short), the durations and ``prompt_eval_count`` / ``eval_count``. With
``"stream": false`` the same final object carries the whole answer. ``POST /api/show`` describes
a pulled model, ``GET /api/tags`` lists them, ``GET /api/version`` answers the version. Errors
use Ollama's ``{"error": "..."}``; an unknown model is a 404 ``model 'x' not found``. Like Ollama,
it ignores fields and options it does not know (Ollama logs a warning; this records them).

``Behaviour`` makes it fail (a status a number of times), stall before answering, trickle tokens,
answer malformed JSON, cut a stream off or end it with an ``{"error"}`` line; it records
requests, their headers, what it ignored, and streams the client abandoned.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from tests.stubs.openai_server import Behaviour as OpenAIBehaviour
from tests.stubs.openai_server import serve_app

VERSION = "0.12.6"
CHAT_FIELDS = frozenset(
    {"model", "messages", "tools", "format", "options", "stream", "keep_alive", "think"}
    | {"truncate", "shift", "logprobs", "top_logprobs"}
)
OPTIONS = frozenset(
    {"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "num_keep"}
    | {"seed", "num_predict", "top_k", "top_p", "min_p", "typical_p", "repeat_last_n"}
    | {"temperature", "repeat_penalty", "presence_penalty", "frequency_penalty", "stop"}
)
ERRORS = {
    503: "server busy, please try again.  maximum pending requests exceeded",
    500: "llama runner process has terminated: signal: killed",
}
_DURATION = re.compile(r"[-+]?(0|((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)")


@dataclass
class Behaviour(OpenAIBehaviour):
    """The OpenAI stub's switches, with Ollama's model names, plus what Ollama records."""

    models: tuple[str, ...] = ("tiny:latest",)
    error_after_tokens: int | None = None
    headers: list[dict[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def has(self, model: str) -> bool:
        return _tagged(model) in {_tagged(m) for m in self.models}


def _tagged(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def _json_body(request: Request) -> dict[str, Any] | JSONResponse:
    raw = await request.body()
    if not raw:
        return _error(400, "missing request body")
    try:
        body = json.loads(raw)
    except ValueError:
        return _error(400, f"invalid character {raw[:1].decode(errors='replace')!r} in JSON")
    if not isinstance(body, dict):
        return _error(400, "json: cannot unmarshal into Go value of type api.ChatRequest")
    return body


def _invalid_chat(behaviour: Behaviour, body: dict[str, Any]) -> JSONResponse | None:
    """The checks Ollama makes before it schedules a model, in its order."""
    if not body.get("model"):
        return _error(400, "model is required")
    keep_alive = body.get("keep_alive")
    if isinstance(keep_alive, str) and not _DURATION.fullmatch(keep_alive):
        return _error(400, f'time: invalid duration "{keep_alive}"')
    if not behaviour.has(body["model"]):
        return _error(404, f"model '{body['model']}' not found")
    return None


def make_app(behaviour: Behaviour) -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def root() -> Response:
        return PlainTextResponse("Ollama is running")

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": VERSION}

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        return {"models": [_listed(m) for m in behaviour.models]}

    @app.post("/api/show", response_model=None)
    async def show(request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        name = body.get("model") or body.get("name") or ""
        if not behaviour.has(name):
            return _error(404, f"model '{name}' not found")
        return JSONResponse(_shown())

    @app.post("/api/chat", response_model=None)
    async def chat(request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        behaviour.requests.append(body)
        behaviour.headers.append(dict(request.headers))
        behaviour.ignored += [k for k in body if k not in CHAT_FIELDS]
        behaviour.ignored += [f"options.{k}" for k in body.get("options") or {} if k not in OPTIONS]
        refused = _invalid_chat(behaviour, body)
        if refused is not None:
            return refused
        if await behaviour.stall_or_fail():  # the delay stands for loading the model
            status = behaviour.fail_status
            return _error(status, ERRORS.get(status, f"simulated failure {status}"))
        if behaviour.malformed:
            return Response("{not json", media_type="application/json")
        if body.get("stream", True):
            return StreamingResponse(_ndjson(behaviour, body), media_type="application/x-ndjson")
        return JSONResponse(_answer(behaviour, body, whole=True))

    return app


def _limited(behaviour: Behaviour, body: dict[str, Any]) -> tuple[list[str], str]:
    """The answer's tokens, cut to ``options.num_predict``, and the done_reason."""
    tokens = behaviour.tokens()
    limit = (body.get("options") or {}).get("num_predict", -1)
    if 0 <= limit < len(tokens):
        return tokens[:limit], "length"
    return tokens, "stop"


def _answer(behaviour: Behaviour, body: dict[str, Any], whole: bool = False) -> dict[str, Any]:
    """The final object of a chat: done, why, timings in nanoseconds and token counts; with
    ``whole`` (no streaming) the answer's text too."""
    tokens, reason = _limited(behaviour, body)
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    return {
        "model": body["model"],
        "created_at": _now(),
        "message": {"role": "assistant", "content": "".join(tokens) if whole else ""},
        "done": True,
        "done_reason": reason,
        "total_duration": 1_200_000_000,
        "load_duration": 50_000_000,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": 150_000_000,
        "eval_count": len(tokens),
        "eval_duration": 1_000_000_000,
    }


async def _ndjson(behaviour: Behaviour, body: dict[str, Any]) -> AsyncIterator[str]:
    tokens, _ = _limited(behaviour, body)
    try:
        for i, token in enumerate(tokens):
            if behaviour.cut_after_tokens is not None and i >= behaviour.cut_after_tokens:
                return  # the body ends without a done: true line
            if behaviour.error_after_tokens is not None and i >= behaviour.error_after_tokens:
                yield json.dumps({"error": ERRORS[500]}) + "\n"  # how Ollama reports a failure
                return  # once the answer has started
            if i and behaviour.token_delay_s:
                await asyncio.sleep(behaviour.token_delay_s)
            chunk = {
                "model": body["model"],
                "created_at": _now(),
                "message": {"role": "assistant", "content": token},
                "done": False,
            }
            yield json.dumps(chunk) + "\n"
        yield json.dumps(_answer(behaviour, body)) + "\n"
    except asyncio.CancelledError:
        behaviour.abandoned_streams += 1
        raise


def _listed(model: str) -> dict[str, Any]:
    return {
        "name": model,
        "model": model,
        "modified_at": "2025-10-01T12:00:00.000000000Z",
        "size": 1_321_098_329,
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": _details(),
    }


def _details() -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "1.2B",
        "quantization_level": "Q4_K_M",
    }


def _shown() -> dict[str, Any]:
    return {
        "modelfile": '# Modelfile generated by "ollama show"\nFROM tiny\n',
        "parameters": 'stop                           "<|eot_id|>"',
        "template": "{{ .Prompt }}",
        "details": _details(),
        "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
        "capabilities": ["completion"],
        "modified_at": "2025-10-01T12:00:00.000000000Z",
    }


@contextmanager
def serve(behaviour: Behaviour) -> Iterator[str]:
    """Run the stub on a free loopback port; yields its address (Ollama's ``host``)."""
    with serve_app(make_app(behaviour)) as root:
        yield root
