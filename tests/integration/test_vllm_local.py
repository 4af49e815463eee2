"""vllm_local. vLLM cannot be installed beside CPU torch, so these tests put a stand-in
``vllm`` package in sys.modules that follows the public API llmops calls (AsyncEngineArgs,
AsyncLLMEngine.from_engine_args, generate → cumulative RequestOutputs, abort, SamplingParams,
LoRARequest). They check llmops's side: the engine arguments, sampling, adapters, streaming
deltas, usage and aborting an abandoned request. The real engine is covered by the gpu test."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llmops.errors import BackendError, MissingDependency
from llmops.generation.vllm_local import VLLMLocalGenerator
from llmops.testing.generator_contract import CONTEXT, PROMPT, check_generator
from llmops.types import GenerationOptions, GenerationRequest
from tests.tiny_models import build_tiny_model


@dataclass
class _Completion:
    text: str
    token_ids: list[int]


@dataclass
class _Output:
    prompt_token_ids: list[int]
    outputs: list[_Completion]


@dataclass
class _Engine:
    args: dict[str, Any]
    calls: list[dict[str, Any]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    reply: str = "Stop the server and run restore [1]."

    async def generate(
        self, prompt: str, params: Any, request_id: str, lora_request: Any = None
    ) -> AsyncIterator[_Output]:
        self.calls.append({"prompt": prompt, "params": params.kwargs, "lora": lora_request})
        words = self.reply.split(" ")
        for i in range(1, len(words) + 1):
            await asyncio.sleep(0)
            yield _Output([1, 2, 3], [_Completion(" ".join(words[:i]), list(range(i)))])

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    def shutdown(self) -> None:
        self.args["shut_down"] = True


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[_Engine]]:
    engines: list[_Engine] = []
    vllm = types.ModuleType("vllm")
    vllm.AsyncEngineArgs = lambda **kw: kw  # type: ignore[attr-defined]

    class AsyncLLMEngine:
        @staticmethod
        def from_engine_args(args: dict[str, Any]) -> _Engine:
            engines.append(_Engine(args))
            return engines[-1]

    class SamplingParams:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    vllm.AsyncLLMEngine = AsyncLLMEngine  # type: ignore[attr-defined]
    vllm.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    lora = types.ModuleType("vllm.lora.request")
    lora.LoRARequest = lambda name, number, path: (name, number, path)  # type: ignore[attr-defined]
    for name, module in {
        "vllm": vllm,
        "vllm.lora": types.ModuleType("vllm.lora"),
        "vllm.lora.request": lora,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    yield engines


def test_vllm_local_keeps_the_contract(fake_vllm: list[_Engine], tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    config = VLLMLocalGenerator.Config(
        model=str(model), quantization="awq", top_k=20, adapters={"support": "adapters/support"}
    )
    generator = VLLMLocalGenerator(config, base_dir=tmp_path)
    answer = asyncio.run(check_generator(generator))
    engine = fake_vllm[0]
    assert answer.cited == (1,) and answer.usage.prompt_tokens == 3
    assert engine.args["quantization"] == "awq" and engine.args["enable_lora"] is True
    assert engine.calls[0]["params"] == {"temperature": 0.0, "max_tokens": 512, "top_k": 20}
    assert "How do I restore a backup?" in engine.calls[0]["prompt"]  # chat template applied
    assert engine.aborted  # the contract abandons one stream: its request was aborted
    assert engine.args.get("shut_down") is True


def test_vllm_local_adapters_by_request(fake_vllm: list[_Engine], tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    config = VLLMLocalGenerator.Config(model=str(model), adapters={"support": "ad/support"})
    generator = VLLMLocalGenerator(config, base_dir=tmp_path)

    async def run() -> None:
        await generator.start()
        try:
            pick = GenerationOptions(adapter="support")
            await generator.generate(GenerationRequest("q", CONTEXT, PROMPT, pick))
            with pytest.raises(BackendError, match=r"unknown adapter 'nope'.*support"):
                wrong = GenerationOptions(adapter="nope")
                await generator.generate(GenerationRequest("q", CONTEXT, PROMPT, wrong))
        finally:
            await generator.close()

    asyncio.run(run())
    assert fake_vllm[0].calls[0]["lora"] == ("support", 1, str(tmp_path / "ad/support"))


def test_vllm_local_without_vllm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    generator = VLLMLocalGenerator(VLLMLocalGenerator.Config(model="m"))
    with pytest.raises(MissingDependency, match=r"llmops\[vllm\]"):
        asyncio.run(generator.start())


@pytest.mark.gpu
def test_vllm_local_on_a_gpu(tmp_path: Path) -> None:  # pragma: no cover - needs CUDA + vllm
    pytest.importorskip("vllm")
    model = build_tiny_model(tmp_path / "tiny")
    generator = VLLMLocalGenerator(VLLMLocalGenerator.Config(model=str(model), max_tokens=8))
    asyncio.run(check_generator(generator))
