"""Any server that speaks the OpenAI ``/v1/chat/completions`` API (OpenAI, LiteLLM, TGI's
Messages API, Ollama's OpenAI endpoint, llama.cpp, vLLM — which also has its own ``vllm``
type), over aiohttp: streaming (SSE), timeouts, retries, a concurrency limit."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from pydantic import Field

from llmops.errors import BackendError
from llmops.generation.citations import generation_from_text
from llmops.generation.http import HttpBackend, parse_event, sse_data
from llmops.generation.sampling import HttpBackendConfig
from llmops.registry import register
from llmops.types import Generation, GenerationRequest, Usage


@register(
    "generator",
    "openai_compat",
    summary="any OpenAI-compatible /v1/chat/completions server",
    extra="llm",
    requires=("aiohttp",),
)
class OpenAICompatGenerator:
    class Config(HttpBackendConfig):
        model: str = Field(min_length=1, description="The model name the server knows.")
        extra_body: dict[str, Any] = Field(
            default_factory=dict, description="Added to every request body as is."
        )

    uses_prompt = True
    kind = "openai_compat"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.name = f"{self.kind}:{config.model}"
        self.http = HttpBackend(self.name, config)

    async def start(self) -> None:
        await self.http.start()

    async def close(self) -> None:
        await self.http.close()

    def extra_params(self) -> dict[str, Any]:
        """Server-specific body fields (vLLM's sampling extras); none for plain OpenAI."""
        return {}

    def body(self, request: GenerationRequest, stream: bool = False) -> dict[str, Any]:
        body = {
            "model": self.config.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.prompt],
            **self.config.sampling(request.options),
            **self.extra_params(),
            **self.config.extra_body,
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def generate(self, request: GenerationRequest) -> Generation:
        reply = await self.http.post_json("/chat/completions", self.body(request), request.deadline)
        try:
            text = str(reply["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raise BackendError(self.name, "malformed response: no choices[0].message") from None
        return generation_from_text(self.name, text, request, _usage(reply.get("usage")))

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[str | Generation, None]:
        pieces: list[str] = []
        usage: Usage | None = None
        finished = False
        lines = self.http.stream_lines(
            "/chat/completions", self.body(request, stream=True), request.deadline
        )
        async with aclosing(sse_data(lines)) as payloads:
            async for payload in payloads:
                event = parse_event(self.name, payload)
                for choice in event.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        pieces.append(text)
                        yield text
                    finished = finished or bool(choice.get("finish_reason"))
                if event.get("usage"):
                    usage = _usage(event["usage"])
        if not finished:
            raise BackendError(self.name, "the stream ended before the answer was finished")
        yield generation_from_text(self.name, "".join(pieces), request, usage)


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))
