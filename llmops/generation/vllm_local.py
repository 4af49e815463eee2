"""vLLM in-process (extra ``vllm``; GPU only): the engine runs inside the llmops process, so
no second server is needed. vLLM is imported when the generator starts, never before.

Use it on a GPU host that runs one app; run ``vllm serve`` with the ``vllm`` generator when
several apps or processes share a model.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from pydantic import Field

from llmops.deps import require
from llmops.errors import BackendError
from llmops.generation.citations import generation_from_text
from llmops.generation.sampling import SamplingConfig
from llmops.generation.streaming import collect
from llmops.registry import register
from llmops.types import Generation, GenerationRequest, Usage


@register(
    "generator",
    "vllm_local",
    summary="vLLM inside the llmops process (GPU only)",
    extra="vllm",
    requires=("vllm",),
)
class VLLMLocalGenerator:
    class Config(SamplingConfig):
        model: str = Field(min_length=1, description="A model folder or hub name on this host.")
        quantization: str | None = Field(None, description="awq, gptq, fp8, bitsandbytes ...")
        dtype: str = "auto"
        max_model_len: int | None = Field(None, ge=16)
        gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
        tensor_parallel_size: int = Field(1, ge=1)
        adapters: dict[str, str] = Field(
            default_factory=dict, description="LoRA adapters: name -> folder."
        )
        max_lora_rank: int = Field(16, ge=1)
        top_k: int | None = Field(None, ge=-1)
        min_p: float | None = Field(None, ge=0, le=1)
        repetition_penalty: float | None = Field(None, gt=0)

    uses_prompt = True

    def __init__(self, config: Config, base_dir: Path | None = None) -> None:
        self.config = config
        self.name = f"vllm_local:{config.model}"
        self.base_dir = base_dir or Path.cwd()
        self._engine: Any = None
        self._tokenizer: Any = None

    async def start(self) -> None:
        if self._engine is not None:
            return
        vllm = require("vllm", "vllm")
        transformers = require("transformers", "local")
        c = self.config
        args = vllm.AsyncEngineArgs(
            model=c.model,
            quantization=c.quantization,
            dtype=c.dtype,
            max_model_len=c.max_model_len,
            gpu_memory_utilization=c.gpu_memory_utilization,
            tensor_parallel_size=c.tensor_parallel_size,
            enable_lora=bool(c.adapters),
            max_lora_rank=c.max_lora_rank,
        )
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(c.model)
        self._engine = vllm.AsyncLLMEngine.from_engine_args(args)

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None and hasattr(engine, "shutdown"):
            engine.shutdown()

    def _lora(self, adapter: str | None) -> Any:
        if adapter is None:
            return None
        if adapter not in self.config.adapters:
            known = ", ".join(self.config.adapters) or "(none configured)"
            raise BackendError(self.name, f"unknown adapter '{adapter}'; adapters: {known}")
        lora_request = require("vllm.lora.request", "vllm").LoRARequest
        number = list(self.config.adapters).index(adapter) + 1  # vLLM wants ids from 1
        return lora_request(adapter, number, str(self.base_dir / self.config.adapters[adapter]))

    def _sampling(self, request: GenerationRequest) -> Any:
        c = self.config
        values = c.sampling(request.options)
        extras = {"top_k": c.top_k, "min_p": c.min_p, "repetition_penalty": c.repetition_penalty}
        values.update({k: v for k, v in extras.items() if v is not None})
        return require("vllm", "vllm").SamplingParams(**values)

    async def generate(self, request: GenerationRequest) -> Generation:
        return await collect(self.stream(request), self.name)

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[str | Generation, None]:
        if self._engine is None:
            raise BackendError(self.name, "generator not started")
        messages = [{"role": m.role, "content": m.content} for m in request.prompt]
        prompt = self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        request_id = uuid.uuid4().hex
        lora = self._lora(request.options.adapter)
        text, output = "", None
        finished = False
        try:
            async for output in self._engine.generate(
                prompt, self._sampling(request), request_id, lora_request=lora
            ):
                latest = output.outputs[0].text  # cumulative
                if len(latest) > len(text):
                    yield latest[len(text) :]
                    text = latest
            finished = True
        finally:
            if not finished:  # the caller went away or the engine failed: free the slot
                await self._engine.abort(request_id)
        if output is None:
            raise BackendError(self.name, "the engine returned nothing")
        usage = Usage(len(output.prompt_token_ids or ()), len(output.outputs[0].token_ids))
        yield generation_from_text(self.name, text, request, usage)
