"""API keys and per-key rate limits on every request, as pure ASGI middleware.

``Authorization: Bearer llmk_...`` (what the OpenAI SDK sends for its ``api_key``). Each path
needs one scope (``scope_for``); a key with ``admin`` has every scope. Open without a key:
``/health``, ``/ready`` (probes), ``/docs``, ``/redoc``, ``/openapi.json`` (the API's shape is
not a secret), the console's static pages under ``/ui`` and its page list ``/ui/pages`` (a
browser cannot send a key when it loads a page; the data routes they call need their scopes).
``/metrics``, moving a registry alias (``.../promote``, ``.../rollback``) and any path not
listed need ``admin``, so unknown paths cannot be probed without a key. Refusals: 401 (no
key, or an unknown, wrong, revoked or expired one), 403 (a missing scope), 429 (rate limit,
with ``Retry-After`` and ``RateLimit-*`` headers), in the house error shape with the request
id. Only a key's id (``request.state.key_id``) is logged, never the key.

Each key's limits are the app's (``auth.limits``) with the key's own in their place
(``llmops keys create --rpm ...``). ``tokens_per_day``: a route that answers with an LLM calls
``charge_tokens(request, usage)``; after the response the middleware charges the sum to the
key, and refuses the key's next requests (429, ``Retry-After`` until the UTC day ends) once it
is over. Every refusal, and every one that shadow mode let through, is counted by reason
(``on_refusal``: the app's ``llmops_access_refusals`` counter). ``document_refusals`` adds the
bearer scheme and the 401/403/429 answers to the OpenAPI document of every protected operation.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops.access.keys import KeyStore, server_secret, split_key
from llmops.access.limits import (
    Decision,
    InFlight,
    Limiter,
    MemoryInFlight,
    MemoryLimiter,
    RedisInFlight,
    RedisLimiter,
    per_minute,
)
from llmops.access.quota import DailyTokens, MemoryDailyTokens, RedisDailyTokens, until_day_end
from llmops.config.auth import BIND_HOST_ENV, AuthConfig, RateLimits
from llmops.errors import StorageError
from llmops.server.errors import ErrorResponse, error_response
from llmops.server.middleware import HttpMiddleware
from llmops.types import Usage

log = logging.getLogger("llmops.server")

OPEN_PATHS = frozenset(
    {"/health", "/ready", "/docs", "/redoc", "/openapi.json", "/ui", "/ui/", "/ui/pages"}
)
OPEN_PREFIXES = ("/docs-assets/", "/ui/static/")
_SCOPE_PREFIXES = (
    ("/v1/", "query"),
    ("/ingest/", "ingest"),
    ("/predict/", "predict"),
    ("/models/", "models"),
    ("/experiments/", "models"),
    ("/eval", "eval"),
)
_ADMIN_SUFFIXES = ("/promote", "/rollback")  # moving a registry alias changes what serves
_SCOPE_PATHS = {
    "/query": "query",
    "/stats": "query",
    "/feedback": "feedback",
    "/ingest": "ingest",
    "/labels": "predict",
    "/models": "models",
    "/experiments": "models",
}


def scope_for(path: str) -> str | None:
    """The scope a request to ``path`` needs; None for the open paths."""
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return None
    if path.rstrip("/").endswith(_ADMIN_SUFFIXES):
        return "admin"
    if (scope := _SCOPE_PATHS.get(path.rstrip("/") or "/")) is not None:
        return scope
    return next((s for prefix, s in _SCOPE_PREFIXES if path.startswith(prefix)), "admin")


def bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if kind.lower() == "bearer" else None
    return None


OnRefusal = Callable[[str, bool], None]
"""Called with a refusal's reason (missing_key, invalid_key, scope, rate, concurrency, tokens,
store) and whether shadow mode let the request through."""


class ApiKeyAuth(HttpMiddleware):
    """Checks the key and its scope, then the key's rate and in-flight limits."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyStore,
        limits: RateLimits,
        limiter: Limiter,
        in_flight: InFlight,
        tokens: DailyTokens,
        shadow: bool = False,
        on_refusal: OnRefusal | None = None,
    ) -> None:
        super().__init__(app)
        self.keys, self.limits, self.limiter, self.tokens = keys, limits, limiter, tokens
        self.in_flight = in_flight
        self.shadow, self.on_refusal = shadow, on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing(send))
            return
        await super().__call__(scope, receive, send)

    def _closing(self, send: Send) -> Send:
        async def on_shutdown(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.limiter.close()
                await self.in_flight.close()
                await self.tokens.close()
                self.keys.close()
            await send(message)

        return on_shutdown

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        needed = scope_for(scope["path"])
        if needed is None:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        token = bearer(scope)
        try:
            info = None if token is None else self.keys.verify(token)
        except StorageError as exc:  # the key store locked past its wait, or its disk full
            await self._refuse(scope, receive, send, "store", 503, str(exc))
            return
        if info is None:
            why = (
                "missing API key: send `Authorization: Bearer <key>`"
                if token is None
                else "invalid, revoked or expired API key"
            )
            parts = None if token is None else split_key(token)
            key_id = parts[0] if parts else None
            log.info(
                "request %s refused (401): %s (key id %s)", state.get("request_id"), why, key_id
            )
            reason = "missing_key" if token is None else "invalid_key"
            await self._refuse(
                scope, receive, send, reason, 401, why, {"WWW-Authenticate": "Bearer"}
            )
            return
        state["key_id"] = info.id
        if needed not in info.scopes and "admin" not in info.scopes:
            why = f"API key {info.id} lacks the scope '{needed}' that {scope['path']} needs"
            await self._refuse(scope, receive, send, "scope", 403, why)
            return
        await self._limited(info.id, info.effective_limits(self.limits), scope, receive, send)

    async def _limited(
        self, key_id: str, limits: RateLimits, scope: Scope, receive: Receive, send: Send
    ) -> None:
        per_day = limits.tokens_per_day
        if per_day is not None and await self._over_quota(key_id, per_day):
            why = f"API key {key_id} has used its {per_day} tokens of today (UTC)"
            retry = str(_ceil(until_day_end(self.tokens.clock())))
            await self._refuse(scope, receive, send, "tokens", 429, why, {"Retry-After": retry})
            return
        rpm = limits.requests_per_minute
        decision = None if rpm is None else await self.limiter.take(key_id, *per_minute(rpm))
        if decision is not None and not decision.allowed and not self._shadowed(key_id, "rate"):
            why = f"rate limit of API key {key_id}: {decision.limit} requests per minute"
            headers = {**rate_headers(decision), "Retry-After": str(_ceil(decision.retry_after_s))}
            await self._refuse(scope, receive, send, "rate", 429, why, headers)
            return
        most = limits.concurrent
        # a slot's own id (a client's X-Request-ID need not be unique), only when one is taken
        request = "" if most is None else uuid.uuid4().hex
        if most is not None and not await self.in_flight.acquire(key_id, most, request):
            if not self._shadowed(key_id, "concurrency"):
                why = f"API key {key_id} has {most} requests in flight already"
                await self._refuse(
                    scope, receive, send, "concurrency", 429, why, {"Retry-After": "1"}
                )
                return
            await self._serve(scope, receive, send, decision)
            return
        try:
            await self._serve(scope, receive, send, decision)
        finally:
            if most is not None:
                await self.in_flight.release(key_id, request)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, decision: Decision | None
    ) -> None:
        try:
            await self._send_with_limits(scope, receive, send, decision)
        finally:
            used = scope.get("state", {}).get(TOKENS_USED, 0)
            if used:
                await self.tokens.charge(scope["state"]["key_id"], used)

    async def _send_with_limits(
        self, scope: Scope, receive: Receive, send: Send, decision: Decision | None
    ) -> None:
        if decision is None:
            await self.app(scope, receive, send)
            return
        added = [(k.lower().encode(), v.encode()) for k, v in rate_headers(decision).items()]

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, send_with_limits)

    async def _over_quota(self, key_id: str, per_day: int) -> bool:
        return await self.tokens.used(key_id) >= per_day and not self._shadowed(key_id, "tokens")

    def _shadowed(self, key_id: str, reason: str) -> bool:
        """In shadow mode a refusal is logged and counted, and the request admitted."""
        if self.shadow:
            log.warning("shadow: API key %s over its %s limit; admitted", key_id, reason)
            if self.on_refusal is not None:
                self.on_refusal(reason, True)
        return self.shadow

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        reason: str,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        if self.on_refusal is not None:
            self.on_refusal(reason, False)
        request_id = scope.get("state", {}).get("request_id")
        code = {
            401: "invalid_api_key",
            403: "insufficient_scope",
            429: "rate_limit_exceeded",
            503: "key_store_unavailable",
        }
        response = error_response(scope["path"], status, message, request_id, code=code[status])
        if headers:
            response.headers.update(headers)
        await response(scope, receive, send)


TOKENS_USED = "tokens_used"


def charge_tokens(request: Request, usage: Usage) -> None:
    """Count an answer's LLM tokens against the request's key (if keys and a daily token
    limit are on, the middleware charges them after the response)."""
    state = request.scope.setdefault("state", {})
    state[TOKENS_USED] = state.get(TOKENS_USED, 0) + usage.total_tokens


def rate_headers(decision: Decision) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(max(0, decision.remaining)),
        "RateLimit-Reset": str(_ceil(decision.reset_s)),
    }


def _ceil(seconds: float) -> int:
    return max(0, math.ceil(seconds))


def install(
    app: FastAPI,
    config: AuthConfig,
    data_dir: Path,
    host: str,
    on_refusal: OnRefusal | None = None,
) -> bool:
    """Add the auth middleware when keys are on for ``host`` (the ``LLMOPS_BIND_HOST`` set by
    ``llmops up`` wins); raises AccessError without a server secret. True when added."""
    host = os.environ.get(BIND_HOST_ENV) or host
    if not config.active(host):
        return False
    limiter, in_flight, tokens = counters(config)
    app.add_middleware(
        ApiKeyAuth,
        keys=KeyStore(data_dir, server_secret(), config.cache_ttl_s),
        limits=config.limits,
        limiter=limiter,
        in_flight=in_flight,
        tokens=tokens,
        shadow=config.shadow,
        on_refusal=on_refusal,
    )
    document_refusals(app)
    return True


def counters(config: AuthConfig) -> tuple[Limiter, InFlight, DailyTokens]:
    """Where the limits count: in this process, or in Redis for one budget across replicas."""
    if config.limiter == "redis":
        url, prefix = config.redis_url, config.redis_prefix
        assert url is not None  # the config model requires it
        lease_s = config.in_flight_lease_s
        return (
            RedisLimiter(url, prefix),
            RedisInFlight(url, prefix, lease_s),
            RedisDailyTokens(url, prefix),
        )
    return MemoryLimiter(), MemoryInFlight(), MemoryDailyTokens()


_REFUSALS = {
    401: "No API key, or an unknown, wrong, revoked or expired one",
    403: "The API key lacks the scope this route needs",
    429: "Over a rate limit or quota of the API key (see Retry-After)",
}


SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API key from `llmops keys create` (llmk_<id>_<secret>); the OpenAI "
    "SDK sends its api_key this way.",
}


def document_refusals(app: FastAPI) -> None:
    """Add the bearer scheme and the auth refusals to every protected operation of ``app``'s
    OpenAPI document (the ``/v1`` operations already declare OpenAI's 4XX, which covers them;
    429 on every one: any key may carry its own limits)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})["apiKey"] = SECURITY_SCHEME
        schemas = components.setdefault("schemas", {})
        schemas.setdefault("ErrorResponse", ErrorResponse.model_json_schema())
        ref = {"$ref": "#/components/schemas/ErrorResponse"}
        for path, operations in schema.get("paths", {}).items():
            if scope_for(path) is None:
                continue
            for operation in operations.values():
                operation["security"] = [{"apiKey": []}]
                responses = operation.setdefault("responses", {})
                if "4XX" in responses:
                    continue
                for status in (401, 403, 429):
                    responses.setdefault(
                        str(status),
                        {
                            "description": _REFUSALS[status],
                            "content": {"application/json": {"schema": ref}},
                        },
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
