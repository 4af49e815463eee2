"""A local server following Text Generation Inference's published HTTP API, for backend tests.

``POST /generate`` answers ``{"generated_text", "details"}`` with TGI's ``x-prompt-tokens`` and
``x-generated-tokens`` headers. ``POST /generate_stream`` sends Server-Sent Events framed as TGI
frames them (``data:{...}``, no space): one event per token, the last one an end-of-sequence
token (``special: true``) carrying ``generated_text`` and ``details`` (with ``input_length``).
Input validation follows TGI's rules and messages (temperature must be strictly positive, top_p
in (0, 1), at most 4 stop sequences, prompt + max_new_tokens within max_total_tokens): a 422
``{"error", "error_type": "validation"}`` from ``/generate``, and, as TGI does, an error event in
a 200 stream from ``/generate_stream``. ``GET /health`` is 200 when ready, 503 otherwise;
``GET /info`` describes the model. The Messages API (``/v1/chat/completions``) is the OpenAI
stub's, mounted on the same ``Behaviour``; prompt tokens are counted as words.

``Behaviour`` extends the OpenAI stub's: the same failures (an HTTP status a number of times,
as TGI's 429/5xx or a proxy in front of it answer), stalls, malformed JSON, cut-off streams,
slow tokens, recorded requests and abandoned streams, plus an error event mid-stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from tests.stubs import openai_server
from tests.stubs.openai_server import serve_app

ERROR_TYPES = {
    422: "validation",
    424: "generation",
    429: "overloaded",
    500: "incomplete_generation",
}
EOS = {"id": 2, "text": "</s>", "logprob": -0.01, "special": True}
_RULES = (
    ("temperature", lambda v: v > 0, "`temperature` must be strictly positive"),
    ("top_p", lambda v: 0 < v < 1, "`top_p` must be > 0.0 and < 1.0"),
    ("typical_p", lambda v: 0 < v < 1, "`typical_p` must be > 0.0 and < 1.0"),
    ("top_k", lambda v: v > 0, "`top_k` must be strictly positive"),
    ("repetition_penalty", lambda v: v > 0, "`repetition_penalty` must be strictly positive"),
    ("max_new_tokens", lambda v: v > 0, "`max_new_tokens` must be strictly positive"),
)


@dataclass
class Behaviour(openai_server.Behaviour):
    models: tuple[str, ...] = ("tgi",)  # the Messages API is asked for model "tgi"
    model_id: str = "HuggingFaceTB/SmolLM2-360M-Instruct"
    max_input_tokens: int = 1024
    max_total_tokens: int = 2048
    healthy: bool = True
    error_after_tokens: int | None = None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": ERROR_TYPES.get(status, "error")}, status)


def validation_error(behaviour: Behaviour, body: dict[str, Any]) -> str | None:
    """TGI's message for the first rule ``body`` breaks, or None when it is valid."""
    params = body.get("parameters") or {}
    if not body.get("inputs"):
        return "Input validation error: `inputs` cannot be empty"
    for key, valid, message in _RULES:
        if params.get(key) is not None and not valid(params[key]):
            return f"Input validation error: {message}"
    if len(params.get("stop") or []) > 4:
        given = len(params["stop"])
        return f"Input validation error: `stop` supports up to 4 stop sequences. Given: {given}"
    prompt, new = len(body["inputs"].split()), params.get("max_new_tokens") or 100
    if prompt + new > behaviour.max_total_tokens:
        return (
            f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
            f"{behaviour.max_total_tokens}. Given: {prompt} `inputs` tokens and {new} "
            "`max_new_tokens`"
        )
    return None


async def _admit(behaviour: Behaviour, request: Request) -> tuple[dict[str, Any], Response | None]:
    """Record the request, stall or fail as told; the body and the failure response, if any."""
    body = await request.json()
    behaviour.requests.append(body)
    if await behaviour.stall_or_fail():
        return body, _error(behaviour.fail_status, "Model is overloaded")
    return body, None


def _token(i: int, text: str) -> dict[str, Any]:
    return {"id": 100 + i, "text": text, "logprob": -0.25, "special": False}


def _details(behaviour: Behaviour, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "finish_reason": "eos_token",
        "generated_tokens": len(behaviour.tokens()) + 1,  # the end-of-sequence token counts
        "seed": params.get("seed") if params.get("do_sample") else None,
    }


def make_app(behaviour: Behaviour) -> FastAPI:
    app = FastAPI()

    @app.get("/health", response_model=None)
    async def health() -> Response:
        if behaviour.healthy:
            return Response(status_code=200)
        return JSONResponse({"error": "unhealthy", "error_type": "healthcheck"}, 503)

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return {
            "model_id": behaviour.model_id,
            "model_sha": None,
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": 128,
            "max_best_of": 2,
            "max_stop_sequences": 4,
            "max_input_tokens": behaviour.max_input_tokens,
            "max_total_tokens": behaviour.max_total_tokens,
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": "3.3.4",
            "sha": None,
            "docker_label": None,
        }

    @app.post("/generate", response_model=None)
    async def generate(request: Request) -> Response:
        body, failure = await _admit(behaviour, request)
        if failure is not None:
            return failure
        problem = validation_error(behaviour, body)
        if problem:
            return _error(422, problem)
        if behaviour.malformed:
            return Response("{not json", media_type="application/json")
        params = body.get("parameters") or {}
        details = _details(behaviour, params)
        tokens = [_token(i, t) for i, t in enumerate(behaviour.tokens())] + [EOS]
        full = {**details, "prefill": [], "tokens": tokens}
        headers = {
            "x-prompt-tokens": str(len(body["inputs"].split())),
            "x-generated-tokens": str(details["generated_tokens"]),
        }
        return JSONResponse(
            {
                "generated_text": behaviour.reply,
                "details": full if params.get("details") else None,
            },
            headers=headers,
        )

    @app.post("/generate_stream", response_model=None)
    async def generate_stream(request: Request) -> Response:
        body, failure = await _admit(behaviour, request)
        if failure is not None:
            return failure
        return StreamingResponse(_events(behaviour, body), media_type="text/event-stream")

    app.mount("/", openai_server.make_app(behaviour))  # /v1/chat/completions, /v1/models
    return app


def _event(data: dict[str, Any]) -> str:
    return f"data:{json.dumps(data)}\n\n"


async def _events(behaviour: Behaviour, body: dict[str, Any]) -> AsyncIterator[str]:
    problem = validation_error(behaviour, body)
    if problem:
        yield _event({"error": problem, "error_type": "validation"})
        return
    if behaviour.malformed:
        yield "data:{not json\n\n"
        return
    params = body.get("parameters") or {}
    tokens = behaviour.tokens()
    try:
        for i, text in enumerate(tokens):
            if behaviour.cut_after_tokens is not None and i >= behaviour.cut_after_tokens:
                return  # the connection ends without the final event
            if behaviour.error_after_tokens is not None and i >= behaviour.error_after_tokens:
                message = "Request failed during generation: Server error: CUDA out of memory"
                yield _event({"error": message, "error_type": "generation"})
                return
            if behaviour.token_delay_s:
                await asyncio.sleep(behaviour.token_delay_s)
            yield _event(
                {"index": i + 1, "token": _token(i, text), "generated_text": None, "details": None}
            )
        details = {**_details(behaviour, params), "input_length": len(body["inputs"].split())}
        final = {"index": len(tokens) + 1, "token": EOS, "generated_text": behaviour.reply}
        yield _event({**final, "details": details if params.get("details") else None})
    except asyncio.CancelledError:
        behaviour.abandoned_streams += 1
        raise


@contextmanager
def serve(behaviour: Behaviour) -> Iterator[str]:
    """Run the stub on a free loopback port; yields its root URL (TGI's base_url)."""
    with serve_app(make_app(behaviour)) as root:
        yield root
