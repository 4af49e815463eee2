"""The threads behind ``hf_local``: they load the model and run transformers ``generate``.

Imported only when an ``hf_local`` generator starts (it needs torch and transformers).

- Every model call runs on the worker's own threads (``max_concurrency`` of them), never on the
  event loop. Text reaches the caller through a streamer that hands each decoded piece to
  ``emit`` as soon as it is printable.
- peft's active adapter is model-wide state, so the ``AdapterGate`` lets generations run
  together only while they use the same adapter (or the base model). A request for another
  adapter waits for the running ones and holds back newcomers, so it is not starved.
- A registered adapter whose alias moved is swapped in by ``swap``: it runs as a job of its own
  that holds the gate exclusively (``AdapterGate.exclusive``): generations already running
  finish on the old weights, newcomers wait (they do not fail), then the new weights go in, by
  peft's hot-swap when rank and target modules match, else loaded under a new internal name
  that the adapter's public name then points at (the old one is deleted).
- Each generation has a ``Job``: a stop flag and a deadline that a stopping criterion checks
  between tokens, so an abandoned or overdue generation ends within one decoding step.
- Stop sequences are found in the decoded text by a ``StopTrimmer``, which cuts the text there
  (holding back what may be the start of one, so no streamed piece shows text the answer drops)
  and then ends generation. transformers' own ``stop_strings`` is not used: it also matches
  inside the names of special tokens (a stop "st" fired on a generated ``<|system|>``).
"""

from __future__ import annotations

import inspect
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import count
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    StoppingCriteria,
    StoppingCriteriaList,
    TextStreamer,
)
from transformers.utils import logging as hf_logging

from llmops.deps import require
from llmops.errors import BackendError

if TYPE_CHECKING:
    from llmops.generation.hf_local import HFLocalGenerator

Emit = Callable[[str], None]
T = TypeVar("T")
HOTSWAP, RELOAD = "hotswap", "reload"
POLL_S = 0.05
"""How often a generation waiting for another adapter's to finish checks its own stop flag."""


@dataclass(eq=False)
class Job:
    """One generation's controls: the adapter it needs, its stop sequences and seed, when it must
    end, and its stop flag."""

    adapter: str | None
    deadline: float
    stops: tuple[str, ...] = ()
    seed: int | None = None
    expired: bool = False
    stop: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.stop.set()

    def should_stop(self) -> bool:
        """True once cancelled or past the deadline (then ``expired`` is set too)."""
        if not self.stop.is_set() and time.monotonic() >= self.deadline:
            self.expired = True
            self.stop.set()
        return self.stop.is_set()


class StopWhen(StoppingCriteria):
    """Ends ``generate`` at the next token once its job is cancelled or overdue, or its text
    reached a stop sequence."""

    def __init__(self, job: Job, trimmer: StopTrimmer) -> None:
        self.job, self.trimmer = job, trimmer

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        stop = self.trimmer.stopped or self.job.should_stop()
        done = torch.full((input_ids.shape[0],), stop, dtype=torch.bool)
        return done.to(input_ids.device)  # type: ignore[return-value]


class StopTrimmer:
    """Cuts streamed text at the first stop sequence, holding back a possible partial one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = [s for s in stops if s]
        self.held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The part of ``text`` (after what was held back) that is certainly answer text."""
        if self.stopped:
            return ""
        buffer = self.held + text
        cuts = [i for i in (buffer.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.stopped, self.held = True, ""
            return buffer[: min(cuts)]
        keep = max(
            (n for s in self.stops for n in range(1, len(s)) if buffer.endswith(s[:n])), default=0
        )
        self.held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """What was held back, at the end of the text (it did not become a stop sequence)."""
        rest, self.held = self.held, ""
        return "" if self.stopped else rest


class RelayStreamer(TextStreamer):
    """transformers' incremental decoding, with each printable piece trimmed and emitted."""

    def __init__(self, tokenizer: Any, trimmer: StopTrimmer, emit: Emit) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.trimmer, self.emit = trimmer, emit

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        piece = self.trimmer.feed(text) + (self.trimmer.flush() if stream_end else "")
        if piece:
            self.emit(piece)


class AdapterGate:
    """Admits generations together only while they share one adapter (None: the base model)."""

    def __init__(self, activate: Callable[[str | None], None]) -> None:
        self._activate = activate
        self._cond = threading.Condition()
        self._current: str | None = None
        self._running = 0
        self._waiting: Counter[str | None] = Counter()
        self._exclusive = 0  # swaps waiting for (or holding) the model alone

    def enter(self, job: Job) -> bool:
        """Wait until ``job``'s adapter may run and make it active; False if the job stopped."""
        with self._cond:
            self._waiting[job.adapter] += 1
            try:
                while not self._admits(job.adapter):
                    if job.should_stop():
                        return False
                    self._cond.wait(POLL_S)
            finally:
                self._waiting[job.adapter] -= 1
            if self._running == 0:  # nothing runs: switching is safe
                self._activate(job.adapter)
                self._current = job.adapter
            self._running += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def exclusive(self, work: Callable[[], T]) -> T:
        """Run ``work`` with no generation running: hold back newcomers, let the running ones
        finish, run it, then re-activate the adapter for whoever comes next."""
        with self._cond:
            self._exclusive += 1
            try:
                while self._running:
                    self._cond.wait(POLL_S)
                self._current = None  # the next admitted job activates its adapter anew
                return work()
            finally:
                self._exclusive -= 1
                self._cond.notify_all()

    def _admits(self, adapter: str | None) -> bool:
        if self._exclusive:
            return False
        if self._running == 0:
            return True
        others_waiting = any(n for name, n in self._waiting.items() if name != adapter)
        return adapter == self._current and not others_waiting


class ModelWorker:
    """A loaded model with its tokenizer, adapters and the threads that run it."""

    def __init__(self, name: str, concurrency: int) -> None:
        self.name = name
        self.model: Any = None
        self.tokenizer: Any = None
        self.gate = AdapterGate(self._activate)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="llmops-hf")
        self._jobs: set[Job] = set()
        self._template_options: dict[str, Any] = {}
        self._peft_names: dict[str, str] = {}  # an adapter's name -> its peft adapter name now
        self._serial = count(1)

    def load(
        self, config: HFLocalGenerator.Config, location: str, adapters: dict[str, str]
    ) -> Future[None]:
        """Load on a worker thread (where generation will run too)."""
        return self._pool.submit(self._load, config, location, adapters)

    def submit(
        self, job: Job, messages: list[dict[str, str]], params: dict[str, Any], emit: Emit
    ) -> Future[tuple[int, int]]:
        """Queue one generation; its future gives (prompt tokens, new tokens)."""
        return self._pool.submit(self._run, job, messages, params, emit)

    def swap(self, name: str, folder: str) -> Future[str]:
        """Replace adapter ``name``'s weights with those in ``folder`` between generations;
        the future gives how (``hotswap`` or ``reload``) or fails with a BackendError (the
        old weights then still serve)."""
        return self._pool.submit(self.gate.exclusive, lambda: self._swap(name, folder))

    def close(self, wait: bool = True) -> None:
        """Stop every generation, wait for the threads (unless told not to), drop the model."""
        for job in list(self._jobs):
            job.cancel()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        self.model = self.tokenizer = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _load(
        self, config: HFLocalGenerator.Config, location: str, adapters: dict[str, str]
    ) -> None:
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                location, trust_remote_code=config.trust_remote_code
            )
            model = AutoModelForCausalLM.from_pretrained(
                location,
                dtype=_dtype(config.dtype),
                device_map=config.device_map or _default_device_map(),
                quantization_config=_quantization(config),
                trust_remote_code=config.trust_remote_code,
            )
        except (OSError, ValueError) as exc:  # not a model, not in the cache, unsupported
            raise BackendError(self.name, f"cannot load model '{location}': {exc}") from exc
        if config.chat_template:
            tokenizer.chat_template = config.chat_template
        if not tokenizer.chat_template:
            raise BackendError(
                self.name, f"the tokenizer of {location} has no chat template; set chat_template"
            )
        self.tokenizer, self.model = tokenizer, self._attach(model, adapters).eval()
        # markup like <|im_end|> inside retrieved text stays text, never a control token (the
        # mistral-common tokenizer has no such option: it never reads control tokens from text)
        if "sanitize_control_tokens" in inspect.signature(tokenizer.apply_chat_template).parameters:
            self._template_options = {"sanitize_control_tokens": True}

    def _attach(self, model: Any, adapters: dict[str, str]) -> Any:
        """The model with every LoRA adapter loaded under its name (the model itself if none)."""
        if not adapters:
            return model
        from peft import PeftModel

        for name, folder in adapters.items():
            self._peft_names[name] = name
            try:
                if isinstance(model, PeftModel):
                    model.load_adapter(folder, adapter_name=name)
                else:
                    model = PeftModel.from_pretrained(model, folder, adapter_name=name)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise BackendError(
                    self.name, f"adapter '{name}' at {folder} does not fit this model: {exc}"
                ) from exc
        return model

    def _activate(self, adapter: str | None) -> None:
        """Make ``adapter`` (None: no adapter) the one the model runs with."""
        if not hasattr(self.model, "peft_config"):
            return
        if adapter is None:
            self.model.base_model.disable_adapter_layers()
        else:
            self.model.base_model.enable_adapter_layers()
            self.model.set_adapter(self._peft_names.get(adapter, adapter), inference_mode=True)

    def _swap(self, name: str, folder: str) -> str:
        """Put ``folder``'s adapter in place of ``name``'s (no generation is running)."""
        from peft import PeftConfig
        from peft.utils.hotswap import hotswap_adapter

        if not hasattr(self.model, "peft_config") or name not in self._peft_names:
            raise BackendError(self.name, f"adapter '{name}' is not loaded; cannot swap it")
        current = self._peft_names[name]
        try:
            new_config = PeftConfig.from_pretrained(folder)
            if _hotswappable(self.model.peft_config[current], new_config):
                hotswap_adapter(self.model, folder, adapter_name=current)
                return HOTSWAP
            replacement = f"{name}__swap{next(self._serial)}"  # peft: no "." in names
            self.model.load_adapter(folder, adapter_name=replacement)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise BackendError(
                self.name, f"adapter '{name}' at {folder} does not fit this model: {exc}"
            ) from exc
        self._peft_names[name] = replacement
        self.model.set_adapter(replacement, inference_mode=True)  # never delete the active one
        self.model.delete_adapter(current)
        return RELOAD

    def _run(
        self, job: Job, messages: list[dict[str, str]], params: dict[str, Any], emit: Emit
    ) -> tuple[int, int]:
        self._jobs.add(job)
        try:
            inputs = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", **self._template_options
            ).to(self.model.device)
            prompt_tokens = int(inputs["input_ids"].shape[-1])
            if not self.gate.enter(job):
                return prompt_tokens, 0
            try:
                return prompt_tokens, self._generate(job, inputs, params, emit) - prompt_tokens
            finally:
                self.gate.leave()
        finally:
            self._jobs.discard(job)

    def _generate(self, job: Job, inputs: Any, params: dict[str, Any], emit: Emit) -> int:
        """Run ``generate``; returns the length of the output sequence, prompt included."""
        if job.should_stop():
            return int(inputs["input_ids"].shape[-1])
        if job.seed is not None:
            torch.manual_seed(job.seed)
        trimmer = StopTrimmer(job.stops)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                **params,
                streamer=RelayStreamer(self.tokenizer, trimmer, emit),
                stopping_criteria=StoppingCriteriaList([StopWhen(job, trimmer)]),
                pad_token_id=_pad_token_id(self.tokenizer),
            )
        return int(output.shape[-1])


def _hotswappable(old: Any, new: Any) -> bool:
    """peft can copy ``new``'s weights into ``old``'s tensors: both plain LoRA of the same
    rank on the same modules (otherwise the tensors' shapes or the wrapped layers differ)."""
    same = ("peft_type", "r", "target_modules", "rank_pattern", "use_dora", "use_rslora")
    return all(getattr(old, key, None) == getattr(new, key, None) for key in same) and (
        str(getattr(old, "peft_type", "")) in ("LORA", "PeftType.LORA")
    )


def _pad_token_id(tokenizer: Any) -> Any:
    """The tokenizer's padding token, else its end token (many chat models define no padding)."""
    return tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id


def _dtype(name: str) -> Any:
    return name if name == "auto" else getattr(torch, name)


def _default_device_map() -> str:
    return "auto" if torch.cuda.is_available() else "cpu"


def _quantization(config: HFLocalGenerator.Config) -> BitsAndBytesConfig | None:
    if config.quantization is None:
        return None
    require("bitsandbytes", "local")
    if config.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = config.bnb_4bit_compute_dtype or (
        "bfloat16" if torch.cuda.is_available() else "float32"
    )
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=config.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=config.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=getattr(torch, compute),
    )
