"""A vLLM server (``vllm serve``): its OpenAI-compatible API plus vLLM's own sampling extras and
structured outputs. ``start()`` checks ``/health`` and that ``/v1/models`` lists the model (a
LoRA adapter started with ``--lora-modules name=path`` is listed, and asked for, by name)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmops.errors import BackendError
from llmops.generation.http import HttpBackend
from llmops.generation.openai_compat import OpenAICompatGenerator
from llmops.registry import register


class StructuredOutput(BaseModel):
    """Constrain the answer (vLLM structured outputs): exactly one of the four."""

    model_config = ConfigDict(extra="forbid")
    json_schema: dict[str, Any] | None = Field(None, alias="json")
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StructuredOutput:
        given = [k for k in ("json_schema", "regex", "choice", "grammar") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("set exactly one of json, regex, choice, grammar")
        return self

    def body(self, style: Literal["structured_outputs", "guided"]) -> dict[str, Any]:
        value = self.model_dump(by_alias=True, exclude_none=True)
        if style == "structured_outputs":  # vLLM >= 0.10.2
            return {"structured_outputs": value}
        return {f"guided_{key}": item for key, item in value.items()}  # older vLLM


@register(
    "generator",
    "vllm",
    summary="a vLLM server: sampling extras, LoRA adapters by name, structured outputs",
    extra="llm",
    requires=("aiohttp",),
)
class VLLMGenerator(OpenAICompatGenerator):
    class Config(OpenAICompatGenerator.Config):
        base_url: str = Field("http://127.0.0.1:8000/v1", description="The server's /v1 address.")
        model: str = Field(min_length=1, description="The served model, or a LoRA adapter's name.")
        top_k: int | None = Field(None, ge=-1, description="-1 disables.")
        min_p: float | None = Field(None, ge=0, le=1)
        repetition_penalty: float | None = Field(None, gt=0)
        structured_output: StructuredOutput | None = None
        structured_output_style: Literal["structured_outputs", "guided"] = Field(
            "structured_outputs",
            description="'guided' sends guided_json/guided_regex/... for vLLM before 0.10.2.",
        )
        check_model: bool = Field(True, description="At start, fail unless /v1/models lists it.")

    config: Config
    kind = "vllm"

    async def start(self) -> None:
        await super().start()
        if self.config.check_model:
            try:
                await self.check_server()
            except BaseException:
                await self.close()
                raise

    async def check_server(self) -> None:
        """Fail with a clear error when the server is down or does not serve the model."""
        root = HttpBackend(self.name, self.config, self.config.base_url.removesuffix("/v1"))
        await root.start()
        try:
            await root.ping("/health")  # 200 with an empty body once the engine is up
        finally:
            await root.close()
        listed = await self.http.get_json("/models")
        names = [m.get("id") for m in listed.get("data", []) if isinstance(m, dict)]
        if self.config.model not in names:
            raise BackendError(
                self.name,
                f"the server does not serve '{self.config.model}'; it serves: "
                f"{', '.join(map(str, names)) or '(nothing)'}. Start it with this model, or "
                "with --lora-modules NAME=PATH --enable-lora for an adapter",
            )

    def extra_params(self) -> dict[str, Any]:
        c = self.config
        extras = {"top_k": c.top_k, "min_p": c.min_p, "repetition_penalty": c.repetition_penalty}
        body = {k: v for k, v in extras.items() if v is not None}
        if c.structured_output is not None:
            body.update(c.structured_output.body(c.structured_output_style))
        return body
