"""Every error the HTTP API sends, in one place: JSON with the request id, never a bare 500.

Two shapes, chosen by the face a request came in on: the native routes answer
``{"detail": ..., "request_id": ...}`` (a 422 lists the invalid fields as FastAPI documents
them), the OpenAI-compatible routes under ``/v1`` answer OpenAI's
``{"error": {"message", "type", "param", "code"}}`` so SDKs raise their usual exceptions.
A 422 never echoes a large or non-JSON input back: it shows a short ``repr`` of it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from llmops.errors import (
    BackendError,
    InvalidRequest,
    InvalidRows,
    LLMOpsError,
    NotFound,
    NotReady,
    RegistryError,
    RowProblem,
    UnknownModel,
    UnknownVersion,
)
from llmops.server import jobs

log = logging.getLogger("llmops.server")

REQUEST_ID = "X-Request-ID"
OPENAI_PREFIX = "/v1/"
INPUT_ECHO_CHARS = 80
# the most specific kind first
STATUS = {
    UnknownModel: 404,
    NotFound: 404,
    InvalidRows: 422,
    InvalidRequest: 400,
    NotReady: 503,
    BackendError: 503,
    UnknownVersion: 404,
    RegistryError: 503,
}


class CodedHTTPException(HTTPException):
    """An HTTP error with a machine-readable ``code`` (OpenAI's ``model_not_found``)."""

    def __init__(self, status_code: int, detail: str, code: str) -> None:
        super().__init__(status_code, detail)
        self.code = code


class ErrorResponse(BaseModel):
    detail: str
    request_id: str | None = None


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorDetail


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a native route: the listed error statuses and any 5xx."""
    declared: dict[int | str, dict[str, Any]] = {s: {"model": ErrorResponse} for s in statuses}
    declared["5XX"] = {"model": ErrorResponse, "description": "Server or backend failure"}
    return declared


OPENAI_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": OpenAIErrorResponse, "description": "Invalid request (OpenAI error shape)"},
    "5XX": {"model": OpenAIErrorResponse, "description": "Backend failure (OpenAI error shape)"},
}
"""OpenAPI ``responses`` of a ``/v1`` route (declaring 4XX also replaces FastAPI's 422)."""


def install(app: FastAPI) -> None:
    """Register the handlers: llmops errors by kind, HTTP errors, invalid bodies, the rest."""
    app.add_exception_handler(LLMOpsError, _handle_llmops)
    app.add_exception_handler(HTTPException, _handle_http)
    app.add_exception_handler(RequestValidationError, _handle_invalid)
    app.add_exception_handler(Exception, _handle_unexpected)


def error_response(
    path: str,
    status: int,
    message: str,
    request_id: str | None,
    *,
    detail: Any = None,
    code: str | None = None,
    param: str | None = None,
) -> JSONResponse:
    """The error in the shape of the face ``path`` belongs to, with the request id header."""
    body: dict[str, Any]
    if path.startswith(OPENAI_PREFIX):
        body = openai_error(message, status, code, param)
    else:
        body = {"detail": message if detail is None else detail, "request_id": request_id}
    headers = {REQUEST_ID: request_id} if request_id else None
    return JSONResponse(body, status_code=status, headers=headers)


def openai_error(
    message: str, status: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = "invalid_request_error" if status < 500 else "api_error"
    code = code or ("invalid_request" if status < 500 else "unavailable")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def status_of(exc: LLMOpsError) -> int:
    return next((s for kind, s in STATUS.items() if isinstance(exc, kind)), 500)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def _handle_llmops(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LLMOpsError)
    status, message = status_of(exc), str(exc)
    if isinstance(exc, InvalidRows):
        detail = [_row_problem(p) for p in exc.problems]
        return error_response(request.url.path, 422, message, _request_id(request), detail=detail)
    if isinstance(exc, NotReady) and (progress := jobs.building(request.app)):
        message = f"not ready yet: {progress}; GET /ready says when"
    elif status >= 500:
        log.error("request %s failed: %s", _request_id(request), exc)
    return error_response(request.url.path, status, message, _request_id(request))


async def _handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = error_response(
        request.url.path,
        exc.status_code,
        str(exc.detail),
        _request_id(request),
        code=getattr(exc, "code", None),
    )
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _handle_invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [_safe_problem(p) for p in exc.errors()]
    summary = "; ".join(f"{_dotted(p['loc'])}: {p['msg']}" for p in problems[:5])
    if request.url.path.startswith(OPENAI_PREFIX):
        param = _dotted(problems[0]["loc"]) if problems else None
        return error_response(request.url.path, 400, summary, _request_id(request), param=param)
    return error_response(request.url.path, 422, summary, _request_id(request), detail=problems)


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    request_id = _request_id(request)
    log.exception("request %s failed unexpectedly", request_id, exc_info=exc)
    message = f"internal error ({type(exc).__name__}); the server log has the details"
    return error_response(request.url.path, 500, message, request_id)


def _row_problem(problem: RowProblem) -> dict[str, Any]:
    """A row's problem in the shape of a 422's validation detail: where, what."""
    loc: list[str | int] = ["body", "rows"]
    if problem.row is not None:
        loc.append(problem.row)
    if problem.column is not None:
        loc.append(problem.column)
    return {"loc": loc, "msg": problem.message, "type": "row_invalid"}


def _safe_problem(problem: dict[str, Any]) -> dict[str, Any]:
    """One validation problem, JSON-safe: loc, msg, type and a short echo of the input."""
    out = {"loc": list(problem.get("loc", ())), "msg": problem["msg"], "type": problem["type"]}
    if "input" in problem:
        out["input"] = _echo(problem["input"])
    return out


def _echo(value: Any) -> Any:
    """Small JSON-safe scalars as they are; anything else (NaN, a huge string or list) as a
    shortened repr."""
    if value is None or isinstance(value, bool | int):
        return value if not isinstance(value, int) or abs(value) < 2**53 else _short(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str) and len(value) <= INPUT_ECHO_CHARS:
        return value
    return _short(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= INPUT_ECHO_CHARS else text[: INPUT_ECHO_CHARS - 1] + "…"


def _dotted(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    return ".".join(parts[1:] if parts and parts[0] == "body" else parts) or "body"
