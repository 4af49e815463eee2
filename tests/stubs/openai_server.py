"""A local server following the OpenAI chat-completions API, for backend tests.

It answers ``POST /v1/chat/completions`` with the response shape the API documents and can be
told to fail (a status code a number of times) or to stall (to exercise timeouts).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class Behaviour:
    reply: str = "The pump must be bled before the first start [1]."
    fail_times: int = 0
    fail_status: int = 503
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)


def make_app(behaviour: Behaviour) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> JSONResponse:
        body = await request.json()
        behaviour.requests.append(body)
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.fail_times > 0:
            behaviour.fail_times -= 1
            return JSONResponse({"error": {"message": "overloaded"}}, behaviour.fail_status)
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
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
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(behaviour.reply.split()),
                    "total_tokens": prompt_tokens + len(behaviour.reply.split()),
                },
            }
        )

    return app


@contextmanager
def serve(behaviour: Behaviour) -> Iterator[str]:
    """Run the stub on a free loopback port; yields its base URL (ending in /v1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(make_app(behaviour), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError("stub server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
