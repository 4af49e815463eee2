"""``server.auth`` (RAG app) and ``serving.auth`` (model app): API keys, their scopes and the
per-key limits. The keys themselves live in the app's data dir (``llmops keys``), never here."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, model_validator

from llmops.config.component import Strict

SCOPES = ("query", "feedback", "ingest", "eval", "predict", "models", "admin")
Scope = Literal["query", "feedback", "ingest", "eval", "predict", "models", "admin"]
SECRET_ENV = "LLMOPS_KEY_SECRET"
BIND_HOST_ENV = "LLMOPS_BIND_HOST"
"""The address `llmops up` listens on (set by it, for ``enabled: auto`` in every worker)."""


class RateLimits(Strict):
    """Per key; leave a limit out (null) for none."""

    requests_per_minute: int | None = Field(
        None, ge=1, description="Token bucket: this many at once, refilled at this rate."
    )
    concurrent: int | None = Field(
        None,
        ge=1,
        description="Requests of one key in flight at once (per process; across replicas "
        "with limiter: redis).",
    )
    tokens_per_day: int | None = Field(
        None, ge=1, description="RAG: LLM tokens (prompt + completion) per key and UTC day."
    )


class AuthConfig(Strict):
    """API keys (``Authorization: Bearer llmk_...``) with scopes, and per-key rate limits."""

    enabled: Literal["auto"] | bool = Field(
        "auto",
        description="auto: on when the server listens on a non-loopback address. The server "
        f"secret comes from the environment variable {SECRET_ENV}.",
    )
    limits: RateLimits = Field(default_factory=RateLimits)
    limiter: Literal["memory", "redis"] = Field(
        "memory", description="memory: per process; redis: one budget across replicas."
    )
    redis_url: str | None = Field(None, description="redis://host:6379/0, for limiter: redis.")
    redis_prefix: str = "llmops:limits"
    in_flight_lease_s: float = Field(
        600.0,
        gt=0,
        description="limiter: redis: a request's concurrency slot is freed after this long "
        "even if its replica died before releasing it; keep it above the longest request.",
    )
    shadow: bool = Field(
        False, description="Rate limits only log and count refusals, and admit (keys still hold)."
    )
    cache_ttl_s: float = Field(
        5.0, ge=0, le=300, description="Verified keys are cached this long: revocation delay."
    )

    @model_validator(mode="after")
    def _redis_needs_url(self) -> AuthConfig:
        if self.limiter == "redis" and not self.redis_url:
            raise ValueError("limiter: redis needs redis_url (e.g. redis://127.0.0.1:6379/0)")
        return self

    def active(self, host: str) -> bool:
        """Whether keys are required for a server listening on ``host``."""
        if self.enabled == "auto":
            return not is_loopback(host)
        return bool(self.enabled)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class CorsConfig(Strict):
    """Which browser origins may call the API (CORS). Empty ``allow_origins`` (the default)
    sends no CORS headers: browsers on other origins are refused, other clients unaffected."""

    allow_origins: list[str] = Field(
        default_factory=list,
        description="e.g. ['https://console.example.com']; '*' for any origin (not with "
        "allow_credentials).",
    )
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST"])
    allow_headers: list[str] = Field(
        default_factory=lambda: ["Authorization", "Content-Type", "X-Request-ID", "X-User-ID"]
    )
    allow_credentials: bool = Field(False, description="Let browsers send cookies / auth.")
    max_age_s: int = Field(600, ge=0, description="How long browsers cache a preflight.")

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> CorsConfig:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError(
                "allow_credentials with allow_origins '*' would let any site act with a "
                "user's credentials: list the origins instead"
            )
        return self
