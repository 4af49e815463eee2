"""hf_local on tiny random models built in the test (tests/tiny_models.py): the generator
contract, streaming, stop sequences, 4/8-bit loading through bitsandbytes on CPU, LoRA adapters
switched per request, cancellation, timeouts and load errors. The weights are random, so the
text is gibberish: these tests check mechanics, never content."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from llmops.build import build, load_config
from llmops.errors import BackendError
from llmops.generation.hf_local import HFLocalGenerator
from llmops.testing.generator_contract import PROMPT, check_generator, check_stream
from llmops.types import Generation, GenerationOptions, GenerationRequest, Message
from tests.conftest import ConfigWriter
from tests.tiny_models import build_lora_adapter, build_tiny_model

pytest.importorskip("transformers")
pytest.importorskip("torch")

LONG = 6000  # tokens; the tiny model never ends by itself: uncancelled, this takes ≈12 s here


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny model and two LoRA adapters for it, built once for this file."""
    root = tmp_path_factory.mktemp("hf_local")
    model = build_tiny_model(root / "model")
    return {
        "model": model,
        "a": build_lora_adapter(model, root / "adapter-a", seed=1),
        "b": build_lora_adapter(model, root / "adapter-b", seed=2),
    }


@pytest.fixture
async def started() -> AsyncGenerator[list[HFLocalGenerator], None]:
    """Generators a test starts; closed at its end whatever happened."""
    generators: list[HFLocalGenerator] = []
    yield generators
    for generator in generators:
        await generator.close()


async def start(started: list[HFLocalGenerator], model: Path, **settings: Any) -> HFLocalGenerator:
    settings.setdefault("max_tokens", 16)
    generator = HFLocalGenerator(HFLocalGenerator.Config(model=str(model), **settings))
    await generator.start()
    started.append(generator)
    return generator


def ask(**options: Any) -> GenerationRequest:
    return GenerationRequest("How do I restore a backup?", (), PROMPT, GenerationOptions(**options))


async def test_keeps_the_generator_contract_in_float32(models: dict[str, Path]) -> None:
    config = HFLocalGenerator.Config(model=str(models["model"]), dtype="float32", max_tokens=16)
    answer = await check_generator(HFLocalGenerator(config))
    assert answer.generator == "hf_local:model"
    assert answer.usage.prompt_tokens > 20 and answer.usage.completion_tokens == 16


async def test_stream_pieces_join_to_the_same_text_as_generate(
    models: dict[str, Path], started: list[HFLocalGenerator]
) -> None:
    generator = await start(started, models["model"], max_tokens=48)
    pieces = [p async for p in generator.stream(ask()) if isinstance(p, str)]
    whole = await generator.generate(ask())
    assert len(pieces) > 1, "the answer must arrive in pieces, not at once"
    assert "".join(pieces) == whole.text  # greedy: the same text both ways
    assert whole.usage.completion_tokens == 48


async def test_stop_sequences_end_the_answer_before_them(
    models: dict[str, Path], started: list[HFLocalGenerator]
) -> None:
    generator = await start(started, models["model"], max_tokens=32)
    full = (await generator.generate(ask())).text
    stop = next(full[i : i + 2] for i in range(3, len(full)) if full[i : i + 2].isalpha())
    final = await check_stream(generator, ask(stop=(stop,)))
    assert final.text == full[: full.index(stop)]
    assert stop not in final.text


async def test_control_tokens_in_the_prompt_text_stay_text(
    models: dict[str, Path], started: list[HFLocalGenerator]
) -> None:
    generator = await start(started, models["model"], max_tokens=1)

    async def prompt_tokens(content: str) -> int:
        request = GenerationRequest("q", (), (Message("user", content),))
        return (await generator.generate(request)).usage.prompt_tokens

    # as a control token <|end|> would be one token and close the user's turn early
    assert await prompt_tokens("a <|end|> b") - await prompt_tokens("a  b") > 1


async def test_loads_4bit_nf4_and_generates_on_cpu(
    models: dict[str, Path], started: list[HFLocalGenerator]
) -> None:
    bnb = pytest.importorskip("bitsandbytes")
    generator = await start(started, models["model"], quantization="4bit")
    layer = generator._worker.model.model.layers[0].self_attn.q_proj  # type: ignore[union-attr]
    assert isinstance(layer, bnb.nn.Linear4bit)
    assert layer.weight.quant_state.quant_type == "nf4"
    answer = await generator.generate(ask())
    assert answer.text and answer.usage.completion_tokens == 16


@pytest.mark.filterwarnings("ignore:MatMul8bitLt")
async def test_loads_8bit_and_generates_on_cpu(
    models: dict[str, Path], started: list[HFLocalGenerator]
) -> None:
    bnb = pytest.importorskip("bitsandbytes")
    generator = await start(started, models["model"], quantization="8bit")
    layer = generator._worker.model.model.layers[0].mlp.down_proj  # type: ignore[union-attr]
    assert isinstance(layer, bnb.nn.Linear8bitLt)
    answer = await generator.generate(ask())
    assert answer.text and answer.usage.completion_tokens == 16


async def test_adapters_switch_per_request(
    models: dict[str, Path], started: list[HFLocalGenerator]
) -> None:
    plain = await start(started, models["model"])
    generator = await start(
        started,
        models["model"],
        adapters={"a": str(models["a"]), "b": str(models["b"])},
        default_adapter="a",
    )
    text = {name: (await generator.generate(ask(adapter=name))).text for name in ("base", "a", "b")}
    assert text["base"] == (await plain.generate(ask())).text  # disabled adapters = base model
    assert len(set(text.values())) == 3, "each adapter must change the answer"
    assert (await generator.generate(ask())).text == text["a"]  # the default adapter
    assert (await generator.generate(ask(adapter="base"))).text == text["base"]  # switched back


async def test_concurrent_requests_for_different_adapters_do_not_mix(
    models: dict[str, Path], started: list[HFLocalGenerator]
) -> None:
    generator = await start(
        started,
        models["model"],
        adapters={"a": str(models["a"]), "b": str(models["b"])},
        max_concurrency=2,
        max_tokens=12,
    )
    order = ["a", "base", "b", "a", "a", "base", "b"]
    alone = {name: (await generator.generate(ask(adapter=name))).text for name in set(order)}
    together = await asyncio.gather(*(generator.generate(ask(adapter=n)) for n in order))
    assert [answer.text for answer in together] == [alone[name] for name in order]


async def test_adapter_on_a_4bit_model_changes_the_answer(
    models: dict[str, Path], started: list[HFLocalGenerator]
) -> None:
    pytest.importorskip("bitsandbytes")
    generator = await start(
        started, models["model"], quantization="4bit", adapters={"a": str(models["a"])}
    )
    base, tuned = [(await generator.generate(ask(adapter=n))).text for n in (None, "a")]
    assert base != tuned


async def test_unknown_adapter_is_refused_with_the_known_ones(
    models: dict[str, Path], started: list[HFLocalGenerator]
) -> None:
    generator = await start(started, models["model"], adapters={"a": str(models["a"])})
    with pytest.raises(BackendError, match=r"unknown adapter 'nope'; this model has: base, a"):
        await generator.generate(ask(adapter="nope"))
    plain = await start(started, models["model"])
    with pytest.raises(BackendError, match="unknown adapter 'a'"):
        await plain.generate(ask(adapter="a"))


@pytest.mark.parametrize("how", ["aclose", "cancel the task"])
async def test_an_abandoned_stream_stops_the_generation(
    how: str, models: dict[str, Path], started: list[HFLocalGenerator]
) -> None:
    generator = await start(started, models["model"])
    stream = generator.stream(ask(max_tokens=LONG))
    if how == "aclose":
        assert isinstance(await anext(stream), str)
        await stream.aclose()
    else:
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in stream:
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    began = time.monotonic()
    answer = await generator.generate(ask(max_tokens=4))  # queues behind the abandoned one
    assert time.monotonic() - began < 2.0, "the abandoned generation kept the worker busy"
    assert answer.usage.completion_tokens == 4


async def test_closing_the_generator_fails_the_answers_in_flight(
    models: dict[str, Path], started: list[HFLocalGenerator]
) -> None:
    generator = await start(started, models["model"])
    running = generator.stream(ask(max_tokens=LONG))
    queued = asyncio.create_task(generator.generate(ask(max_tokens=LONG)))
    assert isinstance(await anext(running), str)
    began = time.monotonic()
    await generator.close()
    assert time.monotonic() - began < 2.0
    with pytest.raises(BackendError, match="closed before the answer was finished"):
        async for _ in running:
            pass
    with pytest.raises(BackendError, match="closed before the answer was finished"):
        await queued


async def test_a_generation_past_timeout_is_stopped_and_fails(
    models: dict[str, Path], started: list[HFLocalGenerator]
) -> None:
    generator = await start(started, models["model"], timeout_s=0.5)
    began = time.monotonic()
    with pytest.raises(BackendError, match=r"longer than timeout_s=0.5s") as caught:
        await generator.generate(ask(max_tokens=LONG))
    assert time.monotonic() - began < 2.0
    assert caught.value.retryable
    assert (await generator.generate(ask(max_tokens=4))).usage.completion_tokens == 4


async def test_load_errors_name_what_is_missing(
    models: dict[str, Path], tmp_path: Path, started: list[HFLocalGenerator]
) -> None:
    with pytest.raises(BackendError, match=f"model folder not found: {tmp_path / 'nope'}"):
        await start(started, tmp_path / "nope")
    with pytest.raises(BackendError, match=f"not a model folder \\(no config.json\\): {tmp_path}"):
        await start(started, tmp_path)
    with pytest.raises(BackendError, match=r"cannot load model 'nobody/no-such-model'"):
        await HFLocalGenerator(HFLocalGenerator.Config(model="nobody/no-such-model")).start()
    with pytest.raises(BackendError, match=f"adapter 'x': no peft adapter at {tmp_path}"):
        await start(started, models["model"], adapters={"x": str(tmp_path)})
    generator = HFLocalGenerator(HFLocalGenerator.Config(model=str(models["model"])))
    with pytest.raises(BackendError, match="not started"):
        await generator.generate(ask())


def test_config_refuses_an_unknown_default_adapter_and_the_reserved_name() -> None:
    with pytest.raises(ValidationError, match="default_adapter 'x' is not in adapters: a"):
        HFLocalGenerator.Config(model="m", adapters={"a": "a"}, default_adapter="x")
    with pytest.raises(ValidationError, match="'base' names the base model"):
        HFLocalGenerator.Config(model="m", adapters={"base": "a"})


async def test_built_from_yaml_with_paths_relative_to_the_config(
    models: dict[str, Path], write_config: ConfigWriter, tmp_path: Path
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(models["model"])
    (tmp_path / "adapters").symlink_to(models["a"].parent)
    path = write_config(
        generator={
            "type": "hf_local",
            "model": "models/tiny",
            "adapters": {"a": "adapters/adapter-a"},
            "max_tokens": 8,
        }
    )
    generator = build(load_config(path)).generator
    await generator.start()
    try:
        answer = await generator.generate(ask(adapter="a"))
    finally:
        await generator.close()
    assert isinstance(answer, Generation) and answer.usage.completion_tokens == 8


@pytest.mark.gpu
async def test_4bit_on_cuda(models: dict[str, Path], started: list[HFLocalGenerator]) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    generator = await start(
        started, models["model"], quantization="4bit", adapters={"a": str(models["a"])}
    )
    model = generator._worker.model  # type: ignore[union-attr]
    assert model.device.type == "cuda"
    answer = await generator.generate(ask(adapter="a"))
    assert answer.text and answer.usage.completion_tokens == 16
