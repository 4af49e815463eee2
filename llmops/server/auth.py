"""API keys and per-key rate limits on every request, as pure ASGI middleware.

``Authorization: Bearer llmk_...`` (what the OpenAI SDK sends for its ``api_key``). Each path
needs one scope (``scope_for``); a key with ``admin`` has every scope. Open without a key:
``/health``, ``/ready`` (probes), ``/docs``, ``/redoc``, ``/openapi.json`` (the API's shape is
not a secret). ``/metrics`` and any path not listed need ``admin``, so unknown paths cannot be
probed without a key. Refusals: 401 (no key, or an unknown, wrong, revoked or expired one),
403 (a missing scope), 429 (rate limit, with ``Retry-After`` and ``RateLimit-*`` headers), in
the house error shape with the request id. Only a key's id (``request.state.key_id``) is
logged, never the key.

``tokens_per_day``: a route that answers with an LLM calls ``charge_tokens(request, usage)``;
after the response the middleware charges the sum to the key, and refuses the key's next
requests (429, ``Retry-After`` until the UTC day ends) once it is over. ``document_refusals``
adds these 401/403/429 answers to the OpenAPI document of every protected operation.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops.access.keys import KeyStore, server_secret, split_key
from llmops.access.limits import Decision, InFlight, Limiter, make_limiter
from llmops.access.quota import DailyTokens, make_daily_tokens, until_day_end
from llmops.config.auth import BIND_HOST_ENV, AuthConfig
from llmops.server.errors import ErrorResponse, error_response
from llmops.server.middleware import HttpMiddleware
from llmops.types import Usage

log = logging.getLogger("llmops.server")

OPEN_PATHS = frozenset({"/health", "/ready", "/docs", "/redoc", "/openapi.json"})
_SCOPE_PREFIXES = (
    ("/v1/", "query"),
    ("/ingest/", "ingest"),
    ("/predict/", "predict"),
    ("/models/", "models"),
    ("/experiments/", "models"),
    ("/eval", "eval"),
)
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
    if path in OPEN_PATHS or path.startswith("/docs-assets/"):
        return None
    if (scope := _SCOPE_PATHS.get(path.rstrip("/") or "/")) is not None:
        return scope
    return next((s for prefix, s in _SCOPE_PREFIXES if path.startswith(prefix)), "admin")


def bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if kind.lower() == "bearer" else None
    return None


class ApiKeyAuth(HttpMiddleware):
    """Checks the key and its scope, then the key's rate and in-flight limits."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyStore,
        limiter: Limiter | None = None,
        in_flight: InFlight | None = None,
        shadow: bool = False,
        tokens: DailyTokens | None = None,
    ) -> None:
        super().__init__(app)
        self.keys, self.limiter, self.in_flight, self.shadow = keys, limiter, in_flight, shadow
        self.tokens = tokens
        self.shadow_refusals = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing(send))
            return
        await super().__call__(scope, receive, send)

    def _closing(self, send: Send) -> Send:
        async def on_shutdown(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                if self.limiter is not None:
                    await self.limiter.close()
                if self.tokens is not None:
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
        info = None if token is None else self.keys.verify(token)
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
            await self._refuse(scope, receive, send, 401, why, {"WWW-Authenticate": "Bearer"})
            return
        state["key_id"] = info.id
        if needed not in info.scopes and "admin" not in info.scopes:
            why = f"API key {info.id} lacks the scope '{needed}' that {scope['path']} needs"
            await self._refuse(scope, receive, send, 403, why)
            return
        await self._limited(info.id, scope, receive, send)

    async def _limited(self, key_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        if self.tokens is not None and await self._over_quota(key_id, self.tokens):
            why = f"API key {key_id} has used its {self.tokens.limit} tokens of today (UTC)"
            retry = str(_ceil(until_day_end(self.tokens.clock())))
            await self._refuse(scope, receive, send, 429, why, {"Retry-After": retry})
            return
        decision = None if self.limiter is None else await self.limiter.take(key_id)
        if decision is not None and not decision.allowed and not self._shadowed(key_id, "rate"):
            why = f"rate limit of API key {key_id}: {decision.limit} requests per minute"
            headers = {**rate_headers(decision), "Retry-After": str(_ceil(decision.retry_after_s))}
            await self._refuse(scope, receive, send, 429, why, headers)
            return
        if self.in_flight is not None and not self.in_flight.acquire(key_id):
            if not self._shadowed(key_id, "concurrency"):
                why = f"API key {key_id} has {self.in_flight.limit} requests in flight already"
                await self._refuse(scope, receive, send, 429, why, {"Retry-After": "1"})
                return
            await self._serve(scope, receive, send, decision)
            return
        try:
            await self._serve(scope, receive, send, decision)
        finally:
            if self.in_flight is not None:
                self.in_flight.release(key_id)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, decision: Decision | None
    ) -> None:
        try:
            await self._send_with_limits(scope, receive, send, decision)
        finally:
            used = scope.get("state", {}).get(TOKENS_USED, 0)
            if self.tokens is not None and used:
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

    async def _over_quota(self, key_id: str, tokens: DailyTokens) -> bool:
        return await tokens.used(key_id) >= tokens.limit and not self._shadowed(key_id, "token")

    def _shadowed(self, key_id: str, limit: str) -> bool:
        """In shadow mode a refusal is logged and counted, and the request admitted."""
        if self.shadow:
            self.shadow_refusals += 1
            log.warning("shadow: API key %s over its %s limit; admitted", key_id, limit)
        return self.shadow

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        request_id = scope.get("state", {}).get("request_id")
        code = {401: "invalid_api_key", 403: "insufficient_scope", 429: "rate_limit_exceeded"}
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


def install(app: FastAPI, config: AuthConfig, data_dir: Path, host: str) -> bool:
    """Add the auth middleware when keys are on for ``host`` (the ``LLMOPS_BIND_HOST`` set by
    ``llmops up`` wins); raises AccessError without a server secret. True when added."""
    host = os.environ.get(BIND_HOST_ENV) or host
    if not config.active(host):
        return False
    keys = KeyStore(data_dir, server_secret(), config.cache_ttl_s)
    limits = config.limits
    limiter = None
    if limits.requests_per_minute is not None:
        rpm = limits.requests_per_minute
        limiter = make_limiter(config.limiter, rpm, config.redis_url, config.redis_prefix)
    in_flight = None if limits.concurrent is None else InFlight(limits.concurrent)
    tokens = None
    if limits.tokens_per_day is not None:
        per_day = limits.tokens_per_day
        tokens = make_daily_tokens(config.limiter, per_day, config.redis_url, config.redis_prefix)
    app.add_middleware(
        ApiKeyAuth,
        keys=keys,
        limiter=limiter,
        in_flight=in_flight,
        shadow=config.shadow,
        tokens=tokens,
    )
    limited = limiter is not None or in_flight is not None or tokens is not None
    document_refusals(app, (401, 403, 429) if limited else (401, 403))
    return True


_REFUSALS = {
    401: "No API key, or an unknown, wrong, revoked or expired one",
    403: "The API key lacks the scope this route needs",
    429: "Over a rate limit or quota of the API key (see Retry-After)",
}


def document_refusals(app: FastAPI, statuses: tuple[int, ...]) -> None:
    """Add the auth refusals to every protected operation of ``app``'s OpenAPI document
    (the ``/v1`` operations already declare OpenAI's 4XX, which covers them)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("ErrorResponse", ErrorResponse.model_json_schema())
        ref = {"$ref": "#/components/schemas/ErrorResponse"}
        for path, operations in schema.get("paths", {}).items():
            if scope_for(path) is None:
                continue
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if "4XX" in responses:
                    continue
                for status in statuses:
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
