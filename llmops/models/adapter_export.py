"""Registered adapters outside ``hf_local``: vLLM's LoRA flags and runtime-loading request for a
version, loading it into a running vLLM server (``POST /v1/load_lora_adapter``), and a merged
model folder for servers without LoRA support."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from llmops.deps import require
from llmops.errors import BackendError, RegistryError
from llmops.models.adapters import AdapterManifest

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM's --max-lora-rank accepts."""


@dataclass(frozen=True)
class VllmLora:
    """How a vLLM server serves one adapter version."""

    lora_name: str  # versioned: a reused name can serve a stale cached adapter (vllm#42125)
    lora_path: str
    max_lora_rank: int

    @property
    def flags(self) -> list[str]:
        """``vllm serve`` flags that load the adapter at start."""
        return [
            "--enable-lora",
            "--lora-modules",
            f"{self.lora_name}={self.lora_path}",
            "--max-lora-rank",
            str(self.max_lora_rank),
        ]

    @property
    def load_body(self) -> dict[str, str]:
        """The JSON body of ``POST /v1/load_lora_adapter`` (a server started with
        VLLM_ALLOW_RUNTIME_LORA_UPDATING=True loads the adapter without a restart)."""
        return {"lora_name": self.lora_name, "lora_path": self.lora_path}


def vllm_lora(name: str, version: int, folder: Path, manifest: AdapterManifest) -> VllmLora:
    """vLLM's view of adapter ``name`` version ``version`` downloaded in ``folder``."""
    fitting = [rank for rank in VLLM_LORA_RANKS if rank >= manifest.rank]
    if not fitting:
        raise RegistryError(
            f"adapter '{name}' version {version} has rank {manifest.rank}; vLLM serves ranks "
            f"up to {VLLM_LORA_RANKS[-1]}"
        )
    return VllmLora(f"{name}-v{version}", str(Path(folder).resolve()), fitting[0])


@dataclass(frozen=True)
class VllmPublished:
    """What ``publish_to_vllm`` did: the name now served, whether the server already had it,
    and the older versions' names it unloaded."""

    lora_name: str
    already_loaded: bool
    unloaded: list[str] = field(default_factory=list)


async def publish_to_vllm(
    url: str,
    lora: VllmLora,
    *,
    api_key: str | None = None,
    unload_older: bool = False,
    timeout_s: float = 30.0,
) -> VllmPublished:
    """Load ``lora`` into the running vLLM server at ``url`` under its versioned name; with
    ``unload_older``, unload every other version of the same adapter the server lists in
    ``GET /v1/models`` (names ``<name>-v<N>``). The server must run with
    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True. A name the server already has counts as loaded:
    a versioned name always means the same weights. Raises BackendError with the server's
    own message when it refuses, and when it is down or does not answer in ``timeout_s``.

    Example::

        lora = vllm_lora("support-lora", 3, Path("adapters/support-lora/v3"), manifest)
        await publish_to_vllm("http://vllm:8000", lora, unload_older=True)
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    root = url.rstrip("/").removesuffix("/v1")
    async with httpx.AsyncClient(base_url=root, headers=headers, timeout=timeout_s) as client:
        already = await _vllm_post(client, "/v1/load_lora_adapter", lora.load_body)
        unloaded: list[str] = []
        if unload_older:
            for old in await _older_versions(client, lora.lora_name):
                await _vllm_post(client, "/v1/unload_lora_adapter", {"lora_name": old})
                unloaded.append(old)
    return VllmPublished(lora.lora_name, already, unloaded)


async def _vllm_post(client: httpx.AsyncClient, path: str, body: dict[str, str]) -> bool:
    """POST to vLLM; True when the load was refused only because the name is loaded."""
    response = await _vllm_call(client, "POST", path, body)
    if response.is_success:
        return False
    message = _vllm_message(response)
    if path.endswith("/load_lora_adapter") and "already been loaded" in message:
        return True
    if response.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
        message = (
            f"the server has no {path}: start vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True "
            "(and --enable-lora) to load adapters at runtime"
        )
    if response.status_code == 401:
        message += " (pass the server's key with --api-key or VLLM_API_KEY)"
    raise BackendError("vllm", f"{path} answered {response.status_code}: {message}")


async def _older_versions(client: httpx.AsyncClient, lora_name: str) -> list[str]:
    response = await _vllm_call(client, "GET", "/v1/models", None)
    if not response.is_success:
        raise BackendError("vllm", f"/v1/models answered {response.status_code}")
    base = lora_name.rsplit("-v", 1)[0]
    pattern = re.compile(rf"{re.escape(base)}-v\d+")
    ids = [str(m.get("id")) for m in response.json().get("data", []) if isinstance(m, dict)]
    return [i for i in ids if pattern.fullmatch(i) and i != lora_name]


async def _vllm_call(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, str] | None
) -> httpx.Response:
    try:
        return await client.request(method, path, json=body)
    except httpx.TimeoutException:
        reason = f"{client.base_url}{path} did not answer within {client.timeout.read}s"
        raise BackendError("vllm", reason, retryable=True) from None
    except httpx.TransportError as exc:
        reason = f"cannot reach {client.base_url}{path}: {exc or type(exc).__name__}"
        raise BackendError("vllm", reason, retryable=True) from None


def _vllm_message(response: httpx.Response) -> str:
    """vLLM's error text: ``{"error": {"message"}}`` (newer), ``{"message"}`` (older),
    FastAPI's ``{"detail"}``, or the plain body."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:  # vLLM's --api-key check: {"error": "Unauthorized"}
            return error
        for key in ("message", "detail"):
            if data.get(key):
                return str(data[key])
    return response.text.strip()


def merge_adapter(adapter_dir: Path, base_dir: Path, out: Path, dtype: str = "float32") -> Path:
    """Write ``base_dir``'s model with the adapter's weights merged in (peft
    ``merge_and_unload``) and the tokenizer (the adapter's own when it has one) into ``out``."""
    torch = require("torch", "local")
    transformers = require("transformers", "local")
    peft = require("peft", "local")
    if not (Path(base_dir) / "config.json").is_file():
        raise RegistryError(f"base model folder not found (no config.json): {base_dir}")
    base: Any = transformers.AutoModelForCausalLM.from_pretrained(
        base_dir, dtype=getattr(torch, dtype)
    )
    try:
        merged = peft.PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    except (ValueError, KeyError, RuntimeError) as exc:
        raise RegistryError(f"the adapter at {adapter_dir} does not fit {base_dir}: {exc}") from exc
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    names = ("tokenizer.json", "tokenizer_config.json")
    has_tokenizer = any((Path(adapter_dir) / name).is_file() for name in names)
    tokenizer_dir = adapter_dir if has_tokenizer else base_dir
    transformers.AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out
