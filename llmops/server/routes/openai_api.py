"""An OpenAI-compatible face: GET /v1/models and POST /v1/chat/completions.

Each app is one model (named after the app). The last user message is the question; the
answer comes back as the assistant message, and the sources in the extension field
``sources`` (same shape as in POST /query), so the official ``openai`` SDK and LangChain's
``ChatOpenAI`` work unchanged and can still read the citations.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from llmops.server.schemas import SourceOut, UsageOut
from llmops.service import RAG

router = APIRouter(prefix="/v1", tags=["openai-compatible"])


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # clients send many sampling fields
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False


def _error(status: int, message: str, kind: str, code: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status)


@router.get("/models", summary="The apps served here, as OpenAI models")
async def models(request: Request) -> dict[str, Any]:
    rag: RAG = request.app.state.rag
    entry = {"id": rag.config.name, "object": "model", "created": 0, "owned_by": "llmops"}
    return {"object": "list", "data": [entry]}


@router.post("/chat/completions", summary="RAG answer to the last user message, OpenAI-style")
async def chat_completions(body: ChatRequest, request: Request) -> JSONResponse:
    rag: RAG = request.app.state.rag
    if body.model != rag.config.name:
        return _error(
            404,
            f"model '{body.model}' not found; available: {rag.config.name}",
            "invalid_request_error",
            "model_not_found",
        )
    if body.stream:
        return _error(
            400,
            "stream=true is not supported yet; send stream=false",
            "invalid_request_error",
            "unsupported_parameter",
        )
    questions = [m.text().strip() for m in body.messages if m.role == "user"]
    if not questions or not questions[-1]:
        return _error(400, "no user message with text", "invalid_request_error", "no_question")
    answer = await rag.aquery(questions[-1], request_id=request.state.request_id)
    usage = UsageOut.model_validate(answer.usage, from_attributes=True).model_dump()
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return JSONResponse(
        {
            "id": f"chatcmpl-{answer.request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": rag.config.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
            "sources": [
                SourceOut.model_validate(s, from_attributes=True).model_dump()
                for s in answer.sources
            ],
            "generator": answer.generator,
        }
    )
