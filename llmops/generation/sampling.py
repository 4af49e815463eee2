"""Settings every LLM backend shares: sampling (overridable per request) and, for backends
reached over HTTP, where they are and how long and how often to try."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmops.types import GenerationOptions


class SamplingConfig(BaseModel):
    """Sampling defaults; a request's ``GenerationOptions`` override them field by field."""

    model_config = ConfigDict(extra="forbid")
    temperature: float | None = Field(0.0, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(512, ge=1, description="Most tokens to generate.")
    seed: int | None = None
    stop: list[str] = Field(default_factory=list, description="Stop sequences.")

    def sampling(self, options: GenerationOptions) -> dict[str, Any]:
        """temperature, top_p, max_tokens, seed and stop for one request; unset ones left out."""
        merged = {
            "temperature": _pick(options.temperature, self.temperature),
            "top_p": _pick(options.top_p, self.top_p),
            "max_tokens": _pick(options.max_tokens, self.max_tokens),
            "seed": _pick(options.seed, self.seed),
            "stop": list(options.stop) if options.stop is not None else self.stop or None,
        }
        return {k: v for k, v in merged.items() if v is not None}


class RetryConfig(BaseModel):
    """How long and how often to try a model server, and how many requests it gets at once."""

    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(
        30.0, gt=0, description="Give up when the server sends nothing for this long."
    )
    max_retries: int = Field(
        2, ge=0, le=10, description="Retries on 429, 5xx and lost connections."
    )
    backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles each retry.")
    max_concurrency: int = Field(16, ge=1, description="Requests in flight to this backend.")


class HttpBackendConfig(SamplingConfig, RetryConfig):
    """A model server reached over HTTP."""

    base_url: str = Field(description="The server's address, e.g. http://127.0.0.1:8001/v1")
    api_key: str | None = Field(None, description="From the environment: ${OPENAI_API_KEY}")
    breaker_failures: int | None = Field(
        None,
        ge=1,
        description="Circuit breaker: after this many failed requests in a row, fail at once "
        "(the fallback answers) for breaker_open_s, then let one probe through. Off when unset.",
    )
    breaker_open_s: float = Field(
        10.0, gt=0, description="How long the circuit stays open before a probe."
    )


def _pick(override: Any, configured: Any) -> Any:
    return configured if override is None else override
