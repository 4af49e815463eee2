"""A local server following the OpenAI chat-completions API as vLLM serves it, for backend tests.

``POST /v1/chat/completions`` answers in the documented shapes: a ``chat.completion`` object,
or with ``"stream": true`` Server-Sent Events of ``chat.completion.chunk`` objects (first a
role delta, then content deltas, then a chunk with ``finish_reason``, then a usage chunk when
``stream_options.include_usage`` is set, then ``data: [DONE]``). Errors use OpenAI's
``{"error": {"message", "type", "code"}}``. ``GET /v1/models`` lists the served models and
``GET /health`` answers 200 with an empty body, as vLLM's do.

``Behaviour`` makes it fail (a status a number of times), stall, answer malformed JSON, cut a
stream off, or trickle tokens slowly; it records requests and streams the client abandoned.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse


@dataclass
class Behaviour:
    reply: str = "The pump must be bled before the first start [1]."
    models: tuple[str, ...] = ("tiny",)
    fail_times: int = 0
    fail_status: int = 503
    delay_s: float = 0.0
    token_delay_s: float = 0.0
    malformed: bool = False
    cut_after_tokens: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    abandoned_streams: int = 0

    async def stall_or_fail(self) -> bool:
        """Wait ``delay_s``; True when this request must fail with ``fail_status``."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_times > 0:
            self.fail_times -= 1
            return True
        return False

    def tokens(self) -> list[str]:
        words = self.reply.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _error(status: int, message: str, kind: str = "server_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status)


def make_app(behaviour: Behaviour) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "vllm"} for m in behaviour.models
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", response_model=None)
    async def complete(request: Request) -> Response:
        body = await request.json()
        behaviour.requests.append(body)
        if await behaviour.stall_or_fail():
            return _error(behaviour.fail_status, "overloaded")
        if body.get("model") not in behaviour.models:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        if behaviour.malformed:
            return Response("{not json", media_type="application/json")
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(behaviour.tokens()),
            "total_tokens": prompt_tokens + len(behaviour.tokens()),
        }
        if body.get("stream"):
            return StreamingResponse(
                _chunks(behaviour, body, usage), media_type="text/event-stream"
            )
        return JSONResponse(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": behaviour.reply},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

    return app


async def _chunks(
    behaviour: Behaviour, body: dict[str, Any], usage: dict[str, int]
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        event = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(event)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        for i, token in enumerate(behaviour.tokens()):
            if behaviour.cut_after_tokens is not None and i >= behaviour.cut_after_tokens:
                return  # the connection ends without finish_reason or [DONE]
            if behaviour.token_delay_s:
                await asyncio.sleep(behaviour.token_delay_s)
            yield chunk({"content": token})
        yield chunk({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            event = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [],
                "usage": usage,
            }
            yield f"data: {json.dumps(event)}\n\n"
        yield "data: [DONE]\n\n"
    except asyncio.CancelledError:
        behaviour.abandoned_streams += 1
        raise


@contextmanager
def serve_app(app: FastAPI) -> Iterator[str]:
    """Run an ASGI app on a free loopback port in a thread; yields ``http://127.0.0.1:PORT``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError("stub server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve(behaviour: Behaviour) -> Iterator[str]:
    """Run the stub on a free loopback port; yields its base URL (ending in /v1)."""
    with serve_app(make_app(behaviour)) as root:
        yield f"{root}/v1"
