"""A causal language model run in-process with transformers: a local folder (or a model in the
local Hugging Face cache), optionally 4/8-bit through bitsandbytes, with peft LoRA adapters
chosen per request: folders, or registered versions (``models:/NAME@ALIAS``) that the generator
follows and hot-swaps when the alias moves (``hf_adapters``).

The model lives on worker threads (``hf_worker``); this module turns requests into generation
parameters and relays the worker's text to async callers. Nothing heavy is imported until
``start()``, so configs naming ``hf_local`` validate without torch installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from llmops.config import resolve_path
from llmops.deps import require
from llmops.errors import BackendError, LLMOpsError
from llmops.generation.citations import generation_from_text
from llmops.generation.hf_adapters import AdapterFollower, OpenSource, parse_ref, preflight
from llmops.generation.sampling import SamplingConfig
from llmops.generation.streaming import collect
from llmops.registry import register
from llmops.types import Generation, GenerationRequest, Usage

if TYPE_CHECKING:
    from llmops.generation.hf_worker import Job, ModelWorker

BASE = "base"
"""The adapter name a request gives to get the base model when a default adapter is set."""
GRACE_S = 2.0
"""How long past its deadline a caller waits for the worker to notice and stop."""
Dtype = Literal["float32", "bfloat16", "float16"]


@register(
    "generator",
    "hf_local",
    summary="a transformers model in-process: 4/8-bit (bitsandbytes), LoRA adapters per request",
    extra="local",
    requires=("transformers", "torch"),
)
class HFLocalGenerator:
    class Config(SamplingConfig):
        model: str = Field(
            min_length=1,
            description="A local model folder (relative to this config file) or the name of a "
            "model already in the local Hugging Face cache (the llmops CLI turns downloads off).",
        )
        dtype: Literal["auto"] | Dtype = Field(
            "auto", description="Weights' dtype; 'auto' keeps the checkpoint's."
        )
        device_map: str | None = Field(
            None, description="'auto', 'cpu', 'cuda:0' ...; default: 'auto' with CUDA, else 'cpu'."
        )
        quantization: Literal["4bit", "8bit"] | None = Field(
            None, description="Load the weights quantized with bitsandbytes."
        )
        bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
        bnb_4bit_use_double_quant: bool = False
        bnb_4bit_compute_dtype: Dtype | None = Field(
            None, description="Default: bfloat16 with CUDA, else float32."
        )
        adapters: dict[str, str] = Field(
            default_factory=dict,
            description="LoRA adapters: name -> adapter folder, or a registered adapter "
            "models:/NAME@ALIAS (models:/support-lora@production) that is followed and "
            "hot-swapped when the alias moves.",
        )
        registry_uri: str | None = Field(
            None,
            description="MLflow tracking URI of the models:/ adapters; default: "
            "MLFLOW_TRACKING_URI, else .llmops/mlflow.db beside this config file.",
        )
        adapter_refresh_s: float = Field(
            30.0, gt=0, description="How often to check whether a models:/ alias moved."
        )
        max_adapter_rank: int = Field(
            64, ge=1, description="The preflight refuses registered adapters of a higher rank."
        )
        default_adapter: str | None = Field(
            None, description="The adapter used when a request names none; default: base model."
        )
        chat_template: str | None = Field(
            None, description="A Jinja chat template replacing the tokenizer's own."
        )
        max_concurrency: int = Field(
            1, ge=1, description="Generations run at once (only while they share an adapter)."
        )
        timeout_s: float = Field(
            120.0, gt=0, description="Stop a generation (and fail it) after this long."
        )
        trust_remote_code: bool = Field(
            False, description="Run Python code shipped with the model (only for models you trust)."
        )

        @model_validator(mode="after")
        def _known_default(self) -> HFLocalGenerator.Config:
            if BASE in self.adapters:
                raise ValueError(f"'{BASE}' names the base model; give the adapter another name")
            for value in self.adapters.values():
                parse_ref(value)  # a malformed models:/ reference fails here, with its fix
            if self.default_adapter is not None and self.default_adapter not in self.adapters:
                known = ", ".join(sorted(self.adapters)) or "(none configured)"
                raise ValueError(
                    f"default_adapter '{self.default_adapter}' is not in adapters: {known}"
                )
            return self

    uses_prompt = True

    def __init__(
        self,
        config: Config,
        *,
        base_dir: Path | None = None,
        adapter_source: OpenSource | None = None,
    ) -> None:
        self.config = config
        self.name = f"hf_local:{Path(config.model).name or config.model}"
        self._base_dir = base_dir or Path.cwd()
        self._open_source = adapter_source
        self._worker: ModelWorker | None = None
        self._follower: AdapterFollower | None = None

    # lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the tokenizer, the model and every adapter on the worker thread."""
        if self._worker is not None:
            return
        for module in ("torch", "transformers", *(("peft",) if self.config.adapters else ())):
            require(module, "local")
        from llmops.generation.hf_worker import ModelWorker

        location = self._model_location()
        refs = self.registered_refs()
        adapters = {n: self._adapter_folder(n, p) for n, p in self.config.adapters.items()}
        follower = self._follower_for(refs, location) if refs else None
        worker = ModelWorker(self.name, self.config.max_concurrency)
        try:
            if follower is not None:
                adapters.update(await asyncio.to_thread(follower.initial))
            await asyncio.wrap_future(worker.load(self.config, location, adapters))
        except BaseException:
            worker.close(wait=False)  # a cancelled start must not block the loop on the load
            if follower is not None:
                follower.close()
            raise
        self._worker, self._follower = worker, follower
        if follower is not None:
            follower.follow(self.config.adapter_refresh_s, worker.swap)

    async def close(self) -> None:
        """Stop following adapters and running generations, release the model (safe to call
        twice)."""
        follower, self._follower = self._follower, None
        if follower is not None:
            await asyncio.to_thread(follower.close)
        worker, self._worker = self._worker, None
        if worker is not None:
            await asyncio.to_thread(worker.close)

    # registered adapters ---------------------------------------------------------------------
    def registered_refs(self) -> dict[str, tuple[str, str]]:
        """Each models:/ adapter's registered model and the alias (or version) it follows:
        ``{adapter: (model, ref)}``."""
        adapters = self.config.adapters.items()
        return {n: ref for n, value in adapters if (ref := parse_ref(value)) is not None}

    def adapter_status(self) -> dict[str, dict[str, Any]]:
        """Each models:/ adapter: the alias it follows, the version serving, swaps so far, the
        versions refused (with why) and the last registry error."""
        return self._follower.status() if self._follower is not None else {}

    async def refresh_adapters(self) -> list[str]:
        """Check the followed aliases now (instead of waiting for adapter_refresh_s); returns
        the adapters swapped (none before ``start``: starting loads the current versions)."""
        worker, follower = self._worker, self._follower
        if worker is None or follower is None:
            return []
        return await asyncio.to_thread(follower.poll, worker.swap)

    def registry_uri(self) -> str:
        """Where models:/ adapters are looked up (see the registry_uri setting)."""
        if self.config.registry_uri:
            return self.config.registry_uri
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        return f"sqlite:///{(self._base_dir / '.llmops' / 'mlflow.db').resolve()}"

    def _follower_for(self, refs: dict[str, tuple[str, str]], location: str) -> AdapterFollower:
        if self._open_source is None:
            raise BackendError(
                self.name,
                f"adapters {', '.join(sorted(refs))} name registered models (models:/...) but "
                "this generator has no model registry; build it from an app config, or pass "
                "adapter_source=llmops.models.adapters.RegistryAdapterSource",
            )
        source = self._open_source(self.registry_uri())
        model_dir = Path(location)
        fingerprint: list[str | None] = []

        def check(manifest: Any) -> str | None:
            if not fingerprint:  # hashed once, on first need (the weights may be large)
                fingerprint.append(source.fingerprint(model_dir) if model_dir.is_dir() else None)
            limit = self.config.max_adapter_rank
            return preflight(manifest, location, fingerprint[0], limit)

        return AdapterFollower(self.name, source, refs, check)

    def _model_location(self) -> str:
        """The model folder, or the model's name when no such folder exists (then it must be in
        the local Hugging Face cache)."""
        model = self.config.model
        path = resolve_path(self._base_dir, model)
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise BackendError(self.name, f"not a model folder (no config.json): {path}")
            return str(path)
        if model.startswith((".", "/", "~")) or model.count("/") != 1:
            raise BackendError(self.name, f"model folder not found: {path}")
        return model

    def _adapter_folder(self, name: str, folder: str) -> str:
        if parse_ref(folder) is not None:
            return folder  # resolved by the follower
        path = resolve_path(self._base_dir, folder)
        if not (path / "adapter_config.json").is_file():
            raise BackendError(
                self.name,
                f"adapter '{name}': no peft adapter at {path} (adapter_config.json is missing)",
            )
        return str(path)

    # answering -------------------------------------------------------------------------------
    def adapter_for(self, requested: str | None) -> str | None:
        """The adapter a request runs with: its own choice, else the default; None = base."""
        name = requested if requested is not None else self.config.default_adapter
        if name is None or name == BASE:
            return None
        if name not in self.config.adapters:
            known = ", ".join([BASE, *sorted(self.config.adapters)])
            raise BackendError(self.name, f"unknown adapter '{name}'; this model has: {known}")
        return name

    def parameters(self, request: GenerationRequest) -> dict[str, Any]:
        """transformers ``generate`` arguments for this request's sampling settings (stop
        sequences and the seed are the worker's job)."""
        sampling = self.config.sampling(request.options)
        params: dict[str, Any] = {}
        if "max_tokens" in sampling:
            params["max_new_tokens"] = sampling["max_tokens"]
        if sampling.get("temperature", 0.0) > 0:
            params.update(do_sample=True, temperature=sampling["temperature"])
            if "top_p" in sampling:
                params["top_p"] = sampling["top_p"]
        else:  # temperature 0 means the single most likely answer
            params["do_sample"] = False
        return params

    async def generate(self, request: GenerationRequest) -> Generation:
        return await collect(self.stream(request), self.name)

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[str | Generation, None]:
        worker = self._ready()
        from llmops.generation.hf_worker import Job

        sampling = self.config.sampling(request.options)
        job = Job(
            adapter=self.adapter_for(request.options.adapter),
            deadline=time.monotonic() + self.config.timeout_s,
            stops=tuple(sampling.get("stop") or ()),
            seed=sampling.get("seed"),
        )
        channel: asyncio.Queue[str | None] = asyncio.Queue()
        emit = _relay(asyncio.get_running_loop(), channel)
        messages = [{"role": m.role, "content": m.content} for m in request.prompt]
        future = worker.submit(job, messages, self.parameters(request), emit)
        future.add_done_callback(lambda _: emit(None))  # after every piece: the end
        pieces: list[str] = []
        try:
            while (piece := await self._next(channel, job)) is not None:
                pieces.append(piece)
                yield piece
            usage = self._outcome(future, job)
        finally:
            job.cancel()  # the caller left, failed or finished: free the worker
            future.cancel()
        yield generation_from_text(self.name, "".join(pieces), request, usage)

    def _ready(self) -> ModelWorker:
        if self._worker is None:
            raise BackendError(self.name, "generator not started")
        return self._worker

    async def _next(self, channel: asyncio.Queue[str | None], job: Job) -> str | None:
        """The worker's next piece of text, or None at the end; bounded by the job's deadline."""
        try:
            async with asyncio.timeout(max(job.deadline - time.monotonic(), 0.0) + GRACE_S):
                return await channel.get()
        except TimeoutError:
            raise BackendError(
                self.name,
                f"no answer within timeout_s={self.config.timeout_s}s (the model is busy or "
                "too slow on this hardware); raise timeout_s or use a smaller model",
                retryable=True,
            ) from None

    def _outcome(self, future: Future[tuple[int, int]], job: Job) -> Usage:
        """Usage of a finished generation; raises for one that failed or ran out of time."""
        closed = BackendError(self.name, "the generator was closed before the answer was finished")
        try:
            prompt_tokens, new_tokens = future.result(timeout=0)
        except CancelledError:
            raise closed from None
        except LLMOpsError:
            raise
        except Exception as exc:
            raise BackendError(self.name, f"generation failed: {exc}") from exc
        if job.stop.is_set() and not job.expired:  # only close() stops a job this early
            raise closed
        if job.expired:
            raise BackendError(
                self.name,
                f"the answer took longer than timeout_s={self.config.timeout_s}s and was cut "
                f"off after {new_tokens} tokens; raise timeout_s or lower max_tokens",
                retryable=True,
            )
        return Usage(prompt_tokens, new_tokens)


def _relay(
    loop: asyncio.AbstractEventLoop, channel: asyncio.Queue[str | None]
) -> Callable[[str | None], None]:
    """A thread-safe ``put`` onto ``channel`` (which lives on ``loop``) for the worker thread."""

    def emit(item: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
            loop.call_soon_threadsafe(channel.put_nowait, item)

    return emit
