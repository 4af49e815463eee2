"""An OpenAI-compatible face: GET /v1/models and POST /v1/chat/completions.

Each app is one model (named after the app). The last user message is the question; the
earlier user and assistant turns are the conversation (they join the search query and the
prompt; the client's system messages are not used: the app's prompt template sets the rules).
The answer comes back as the assistant message, streamed or not, with the sources in the
extension field ``sources`` (same shape as in POST /query) and the serving backend in
``generator``, so the official ``openai`` SDK and LangChain's ``ChatOpenAI`` work unchanged
and can still read the citations. ``temperature``, ``top_p``, ``max_tokens`` (or
``max_completion_tokens``), ``seed`` and ``stop`` override the generator's settings; the
extensions ``top_k``, ``filters`` and ``adapter`` work as in POST /query, and
``"retrieval": false`` makes it a plain gateway: the conversation, system messages included,
goes to the generator (with its retries, timeouts and fallbacks) without documents.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Self

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmops.errors import InvalidRequest, LLMOpsError
from llmops.server.auth import charge_tokens
from llmops.server.errors import OPENAI_RESPONSES, CodedHTTPException, openai_error, status_of
from llmops.server.routes.query import experiment_user
from llmops.server.schemas import (
    AS_INTEGER,
    FILTERS_LIMIT,
    MAX_FILTER_KEYS,
    MAX_TEXT_CHARS,
    SourceOut,
    TokenCount,
    TopK,
    UsageOut,
    config_limit,
)
from llmops.server.streaming import Piece, event_stream, first_piece, sse
from llmops.service import RAG, QueryKwargs
from llmops.types import Answer, GenerationOptions, Message

router = APIRouter(prefix="/v1", tags=["openai-compatible"], responses=OPENAI_RESPONSES)
INT64 = 2**63
MAX_EXTRA_FIELDS = 32
MAX_MESSAGES = 10_000
MAX_CONTENT_PARTS = 256
Seed = Annotated[int, Field(ge=-INT64, lt=INT64), AS_INTEGER]
Choices = Annotated[int, Field(ge=1, le=128), AS_INTEGER]


class Lenient(BaseModel):
    """Strict where the fields are ours to read; clients send many fields we do not use
    (kept, at most ``MAX_EXTRA_FIELDS`` of them)."""

    model_config = ConfigDict(
        extra="allow",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={"maxProperties": MAX_EXTRA_FIELDS},
    )

    @model_validator(mode="after")
    def _few_extra_fields(self) -> Self:
        extra = len(self.model_extra or {})
        if extra > MAX_EXTRA_FIELDS - len(type(self).model_fields):
            raise ValueError(f"{extra} unknown fields; {MAX_EXTRA_FIELDS} fields at most")
        return self


class ContentPart(Lenient):
    type: str = Field(max_length=64)
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)


class ChatMessage(Lenient):
    role: str = Field(max_length=64)
    content: (
        Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
        | Annotated[list[ContentPart], Field(max_length=MAX_CONTENT_PARTS)]
        | None
    ) = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class StreamOptions(Lenient):
    include_usage: bool = False


class ChatRequest(Lenient):
    model: str = Field(max_length=200)
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=MAX_MESSAGES,
        description="The conversation; the last user message is the question "
        "(server.max_question_chars), the turns before it the history "
        "(server.max_history_chars).",
        json_schema_extra=config_limit("server.max_messages"),
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: TokenCount | None = None
    max_completion_tokens: TokenCount | None = None
    seed: Seed | None = None
    user: str | None = Field(None, max_length=200, description="End-user id: keeps one variant")
    stop: (
        Annotated[str, Field(max_length=1000)]
        | Annotated[list[Annotated[str, Field(max_length=1000)]], Field(max_length=16)]
        | None
    ) = None
    n: Choices | None = None
    top_k: TopK | None = Field(
        None,
        description="llmops: chunks to retrieve",
        json_schema_extra=config_limit("server.max_top_k"),
    )
    filters: dict[str, Any] | None = Field(
        None,
        max_length=MAX_FILTER_KEYS,
        description="llmops: metadata filter",
        json_schema_extra=FILTERS_LIMIT,
    )
    adapter: str | None = Field(None, max_length=200, description="llmops: LoRA adapter (hf_local)")
    retrieval: bool = Field(
        True, description="llmops: false sends the conversation as is, without documents"
    )

    def query(self, correlation_id: str | None = None) -> tuple[str, QueryKwargs]:
        """The question (last user message) and the options: history, retrieval, sampling."""
        turns = [(m.role, m.text().strip()) for m in self.messages]
        last = max((i for i, (role, text) in enumerate(turns) if role == "user"), default=None)
        if last is None or not turns[last][1]:
            raise InvalidRequest("no user message with text")
        if self.n not in (None, 1):
            raise InvalidRequest("n > 1 is not supported; ask once per answer")
        roles = ("user", "assistant") if self.retrieval else ("system", "user", "assistant")
        history = [Message(r, t) for r, t in turns[:last] if r in roles and t]
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        generation = GenerationOptions(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_completion_tokens or self.max_tokens,
            seed=self.seed,
            stop=tuple(stop) if stop is not None else None,
            adapter=self.adapter,
        )
        options = QueryKwargs(
            top_k=self.top_k,
            filters=self.filters,
            history=history,
            generation=generation,
            retrieve=self.retrieval,
            correlation_id=correlation_id,
        )
        return turns[last][1], options


def document_models(app: FastAPI, models: list[str]) -> None:
    """Name the served models in the OpenAPI document (``model``'s enum), so clients and
    schema-driven tools know the valid values."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        properties = schema["components"]["schemas"]["ChatRequest"]["properties"]
        properties["model"]["enum"] = models
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


@router.get("/models", summary="The apps served here, as OpenAI models")
async def models(request: Request) -> dict[str, Any]:
    rag: RAG = request.app.state.rag
    entry = {"id": rag.config.name, "object": "model", "created": 0, "owned_by": "llmops"}
    return {"object": "list", "data": [entry]}


@router.post("/chat/completions", summary="RAG answer to the conversation, OpenAI-style")
async def chat_completions(body: ChatRequest, request: Request) -> Response:
    rag: RAG = request.app.state.rag
    if body.model != rag.config.name:
        message = f"model '{body.model}' not found; available: {rag.config.name}"
        raise CodedHTTPException(404, message, "model_not_found")
    request_id: str = request.state.request_id
    question, options = body.query(request.state.correlation_id)
    user = experiment_user(request, body.user)
    if not body.stream:
        answer = await rag.aquery(question, request_id=request_id, user=user, **options)
        charge_tokens(request, answer.usage)
        return JSONResponse(_completion(answer, rag.config.name))
    pieces = rag.astream(question, request_id=request_id, user=user, **options)
    first = await first_piece(pieces)
    chunks = _ChunkWriter(rag.config.name, request_id, body.stream_options)

    def encode(item: Piece) -> str:
        if not isinstance(item, str):
            charge_tokens(request, item.usage)
        return chunks.encode(item)

    return event_stream(first, pieces, encode, chunks.error)


def _usage(answer: Answer) -> dict[str, int]:
    usage = UsageOut.model_validate(answer.usage, from_attributes=True).model_dump()
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage


def _extensions(answer: Answer) -> dict[str, Any]:
    sources = [SourceOut.model_validate(s, from_attributes=True) for s in answer.sources]
    return {"sources": [s.model_dump() for s in sources], "generator": answer.generator}


def _completion(answer: Answer, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{answer.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.answer},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(answer),
        **_extensions(answer),
    }


class _ChunkWriter:
    """Turns stream pieces into ``chat.completion.chunk`` events, as OpenAI frames them: the
    first delta carries the role; the last chunk has ``finish_reason`` and our sources; a usage
    chunk (empty choices) follows when asked for; then ``[DONE]``."""

    def __init__(self, model: str, request_id: str, options: StreamOptions | None) -> None:
        self.model = model
        self.id = f"chatcmpl-{request_id}"
        self.created = int(time.time())
        self.include_usage = bool(options and options.include_usage)
        self.started = False

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        base = {"id": self.id, "object": "chat.completion.chunk", "created": self.created}
        return sse({**base, "model": self.model, "choices": choices, **extra})

    def _delta(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        if not self.started:
            delta = {"role": "assistant", **delta}
            self.started = True
        return {"index": 0, "delta": delta, "finish_reason": finish}

    def encode(self, item: Piece) -> str:
        if isinstance(item, str):
            return self._chunk([self._delta({"content": item})])
        out = self._chunk([self._delta({}, "stop")], **_extensions(item))
        if self.include_usage:
            out += self._chunk([], usage=_usage(item))
        return out + sse("[DONE]")

    def error(self, exc: LLMOpsError) -> str:
        return sse(openai_error(str(exc), status_of(exc)))
