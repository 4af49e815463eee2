"""Any server that speaks the OpenAI ``/v1/chat/completions`` API (vLLM, TGI's Messages API,
Ollama's OpenAI endpoint, LiteLLM, OpenAI itself), over httpx with timeouts, retries with
backoff on 429 / 5xx / connection errors, and a concurrency limit."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmops.deps import require
from llmops.errors import BackendError
from llmops.generation.citations import cited_positions, declined
from llmops.registry import register
from llmops.types import Generation, Message, ScoredChunk, Usage

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@register(
    "generator",
    "openai_compat",
    summary="any OpenAI-compatible /v1/chat/completions server",
    extra="llm",
    requires=("httpx",),
)
class OpenAICompatGenerator:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        base_url: str = Field(description="e.g. http://127.0.0.1:8001/v1")
        model: str = Field(min_length=1)
        api_key: str | None = Field(None, description="From the environment: ${OPENAI_API_KEY}")
        timeout_s: float = Field(30.0, gt=0)
        max_retries: int = Field(2, ge=0, le=10)
        backoff_s: float = Field(0.5, ge=0)
        max_concurrency: int = Field(16, ge=1)
        temperature: float | None = Field(0.0, ge=0, le=2)
        top_p: float | None = Field(None, gt=0, le=1)
        max_tokens: int | None = Field(512, ge=1)
        seed: int | None = None
        stop: list[str] = Field(default_factory=list)
        extra_body: dict[str, Any] = Field(default_factory=dict)

    uses_prompt = True

    def __init__(self, config: Config) -> None:
        self.config = config
        self.name = f"openai_compat:{config.model}"
        self._client: Any = None
        self._slots: asyncio.Semaphore | None = None

    async def start(self) -> None:
        httpx = require("httpx", "llm")
        headers = {"authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.config.base_url.rstrip("/"),
            headers=headers,
            timeout=self.config.timeout_s,
        )
        self._slots = asyncio.Semaphore(self.config.max_concurrency)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def body(self, prompt: Sequence[Message]) -> dict[str, Any]:
        c = self.config
        sampling = {
            "temperature": c.temperature,
            "top_p": c.top_p,
            "max_tokens": c.max_tokens,
            "seed": c.seed,
            "stop": c.stop or None,
        }
        return {
            "model": c.model,
            "messages": [{"role": m.role, "content": m.content} for m in prompt],
            **{k: v for k, v in sampling.items() if v is not None},
            **c.extra_body,
        }

    async def generate(
        self, question: str, context: Sequence[ScoredChunk], prompt: Sequence[Message]
    ) -> Generation:
        if self._client is None or self._slots is None:
            raise BackendError(self.name, "generator not started")
        async with self._slots:
            reply = await self._post_with_retries(self.body(prompt))
        try:
            text = str(reply["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raise BackendError(self.name, "malformed response: no choices[0].message") from None
        usage = reply.get("usage") or {}
        return Generation(
            text=text,
            generator=self.name,
            cited=cited_positions(text, len(context)),
            abstained=declined(text),
            usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
        )

    async def _post_with_retries(self, body: dict[str, Any]) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                return await self._post(body)
            except BackendError as exc:
                if not exc.retryable or attempt >= self.config.max_retries:
                    raise
            attempt += 1
            delay = self.config.backoff_s * 2 ** (attempt - 1)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        httpx = require("httpx", "llm")
        try:
            response = await self._client.post("/chat/completions", json=body)
        except httpx.TimeoutException:
            raise BackendError(
                self.name, f"no answer within {self.config.timeout_s}s", retryable=True
            ) from None
        except httpx.TransportError as exc:
            raise BackendError(self.name, f"connection failed: {exc}", retryable=True) from None
        if response.status_code != 200:
            detail = response.text[:300]
            raise BackendError(
                self.name,
                f"HTTP {response.status_code}: {detail}",
                retryable=response.status_code in RETRY_STATUS,
            )
        try:
            data: dict[str, Any] = response.json()
        except ValueError:
            raise BackendError(self.name, "response is not JSON") from None
        return data
