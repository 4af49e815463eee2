"""A Hugging Face Text Generation Inference (TGI) server, over HTTP.

Two APIs, picked by ``api``: ``messages`` (the default) talks to TGI's OpenAI-compatible
Messages API through ``OpenAICompatGenerator``, and TGI applies the model's own chat template.
``generate`` talks to TGI's native ``/generate`` and ``/generate_stream``: the prompt is rendered
here with ``chat_template`` and TGI's own sampling settings (``top_k``, ``repetition_penalty``,
``truncate``, ``typical_p``) apply. ``start()`` checks ``/health`` and reads ``/info``, so the
generator is named after the served model (``tgi:<model_id>``) and a ``max_tokens`` the server
can never honour fails at start rather than on every request.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any, Literal
from urllib.parse import urlsplit

from jinja2 import Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import Field, field_validator, model_validator

from llmops.errors import BackendError
from llmops.generation.citations import generation_from_text
from llmops.generation.http import HttpBackend, parse_event, sse_data
from llmops.generation.openai_compat import OpenAICompatGenerator
from llmops.generation.sampling import HttpBackendConfig
from llmops.registry import register
from llmops.types import Generation, GenerationOptions, GenerationRequest, Message, Usage

CHATML = (
    "{% for message in messages %}"
    "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endfor %}"
    "<|im_start|>assistant\n"
)
"""The default ``chat_template``: ChatML (Qwen, SmolLM, Hermes and other instruct models)."""

_TEMPLATES = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
_NATIVE_ONLY = ("top_k", "repetition_penalty", "truncate", "typical_p", "chat_template")


@register(
    "generator",
    "tgi",
    summary="a Hugging Face Text Generation Inference server: Messages API or native /generate",
    extra="llm",
    requires=("aiohttp",),
)
class TGIGenerator:
    class Config(HttpBackendConfig):
        base_url: str = Field(
            "http://127.0.0.1:8080", description="The TGI server's root address (not /v1)."
        )
        api: Literal["messages", "generate"] = Field(
            "messages",
            description="'messages': TGI's OpenAI-compatible API, the model's own chat template. "
            "'generate': TGI's native API, chat_template and TGI's sampling extras.",
        )
        top_k: int | None = Field(None, gt=0, description="api: generate only.")
        repetition_penalty: float | None = Field(None, gt=0, description="api: generate only.")
        truncate: int | None = Field(
            None, ge=1, description="Keep only the prompt's last N tokens (api: generate only)."
        )
        typical_p: float | None = Field(None, gt=0, lt=1, description="api: generate only.")
        chat_template: str = Field(
            CHATML,
            description="Jinja template turning `messages` into the prompt (api: generate "
            "only); gets `messages` and `add_generation_prompt`. Default: ChatML.",
        )

        @field_validator("chat_template")
        @classmethod
        def _compiles(cls, value: str) -> str:
            try:
                _TEMPLATES.from_string(value)
            except TemplateError as exc:
                raise ValueError(f"chat_template is not a valid Jinja template: {exc}") from None
            return value

        @model_validator(mode="after")
        def _native_settings_need_native_api(self) -> TGIGenerator.Config:
            given = [key for key in _NATIVE_ONLY if key in self.model_fields_set]
            if self.api == "messages" and given:
                raise ValueError(
                    f"api: messages ignores {', '.join(given)} (TGI's Messages API has no such "
                    "settings): set api: generate to use them, or remove them"
                )
            return self

    name: str
    uses_prompt = True

    def __init__(self, config: Config) -> None:
        self.config = config
        root = config.base_url.rstrip("/")
        shared = config.model_dump(include=set(HttpBackendConfig.model_fields) - {"base_url"})
        self.chat = OpenAICompatGenerator(
            OpenAICompatGenerator.Config(**shared, base_url=f"{root}/v1", model="tgi")
        )
        self.http = HttpBackend(f"tgi:{urlsplit(root).netloc or root}", config, root)
        self.template: Template = _TEMPLATES.from_string(config.chat_template)
        self.rename(self.http.name)

    def rename(self, name: str) -> None:
        """Name answers and errors ``name`` (``tgi:<model_id>`` once ``/info`` is read)."""
        self.name = self.http.name = self.chat.name = self.chat.http.name = name

    async def start(self) -> None:
        await self.http.start()
        await self.chat.start()
        try:
            await self.check_server()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self.chat.close()
        await self.http.close()

    async def check_server(self) -> None:
        """Fail clearly when TGI is down or still loading; name this generator after the
        served model; refuse a ``max_tokens`` that leaves no room for any prompt."""
        try:
            await self.http.ping("/health")  # 200 once the model is loaded, 503 before
            info = await self.http.get_json("/info")
        except BackendError as exc:
            raise BackendError(
                self.name,
                f"no ready TGI server at {self.http.base_url}: {exc.reason}. Start it "
                "(see deploy/tgi.md) or fix base_url",
                retryable=exc.retryable,
            ) from None
        if not isinstance(info, dict) or not info.get("model_id"):
            raise BackendError(self.name, f"/info names no model_id: {str(info)[:200]!r}")
        self.rename(f"tgi:{info['model_id']}")
        total = info.get("max_total_tokens")
        wanted = self.config.max_tokens
        if isinstance(total, int) and wanted is not None and wanted >= total:
            raise BackendError(
                self.name,
                f"max_tokens={wanted} leaves no room for the prompt: this server allows "
                f"{total} tokens for prompt and answer together (max_input_tokens="
                f"{info.get('max_input_tokens', info.get('max_input_length'))}). Lower "
                "max_tokens, or start TGI with a larger --max-total-tokens",
            )

    async def generate(self, request: GenerationRequest) -> Generation:
        if self.config.api == "messages":
            return await self.chat.generate(request)
        reply, headers = await self.http.post_json_with_headers(
            "/generate", self.body(request), request.deadline
        )
        try:
            text = str(reply["generated_text"])
            details = reply.get("details") or {}
        except (KeyError, TypeError, AttributeError):
            raise BackendError(self.name, "malformed response: no generated_text") from None
        usage = Usage(
            _count(headers.get("x-prompt-tokens")), _count(details.get("generated_tokens"))
        )
        return generation_from_text(self.name, text, request, usage)

    def stream(self, request: GenerationRequest) -> AsyncGenerator[str | Generation, None]:
        if self.config.api == "messages":
            return self.chat.stream(request)
        return self._native_stream(request)

    async def _native_stream(
        self, request: GenerationRequest
    ) -> AsyncGenerator[str | Generation, None]:
        """One event per token; the last one also carries ``generated_text`` and ``details``.
        Special tokens (end of sequence) are not part of the answer's text."""
        pieces: list[str] = []
        final: dict[str, Any] | None = None
        lines = self.http.stream_lines("/generate_stream", self.body(request), request.deadline)
        async with aclosing(sse_data(lines)) as payloads:
            async for payload in payloads:
                event = parse_event(self.name, payload)
                token = event.get("token") or {}
                if token.get("text") and not token.get("special"):
                    pieces.append(str(token["text"]))
                    yield pieces[-1]
                if event.get("generated_text") is not None:
                    final = event
        if final is None:
            raise BackendError(
                self.name, "the stream was cut off before TGI's final event: answer incomplete"
            )
        details = final.get("details") or {}
        usage = Usage(_count(details.get("input_length")), _count(details.get("generated_tokens")))
        yield generation_from_text(self.name, "".join(pieces), request, usage)

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """The native API's request: the rendered prompt and TGI's parameters."""
        return {
            "inputs": self.render(request.prompt),
            "parameters": self.parameters(request.options),
        }

    def render(self, prompt: Sequence[Message]) -> str:
        messages = [{"role": m.role, "content": m.content} for m in prompt]
        try:
            return self.template.render(messages=messages, add_generation_prompt=True)
        except TemplateError as exc:
            raise BackendError(
                self.name, f"chat_template failed: {exc}; fix chat_template in the config"
            ) from None

    def parameters(self, options: GenerationOptions) -> dict[str, Any]:
        """Our sampling in TGI's terms. TGI rejects temperature 0, and samples whenever
        top_p, top_k or typical_p is set, so temperature 0 (or unset) sends none of them:
        greedy decoding. TGI also rejects top_p 1, which means "no nucleus cut" anyway."""
        config = self.config
        sampling = config.sampling(options)
        temperature = sampling.get("temperature") or 0.0
        top_p = sampling.get("top_p")
        params: dict[str, Any] = {
            "do_sample": temperature > 0,
            "max_new_tokens": sampling.get("max_tokens"),
            "seed": sampling.get("seed"),
            "stop": sampling.get("stop"),
            "repetition_penalty": config.repetition_penalty,
            "truncate": config.truncate,
            "details": True,
            "return_full_text": False,
        }
        if temperature > 0:
            params["temperature"] = temperature
            params["top_p"] = top_p if top_p is not None and top_p < 1 else None
            params["top_k"] = config.top_k
            params["typical_p"] = config.typical_p
        return {key: value for key, value in params.items() if value is not None}


def _count(value: Any) -> int:
    """A token count from a header or a details field; 0 when absent or unreadable."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
