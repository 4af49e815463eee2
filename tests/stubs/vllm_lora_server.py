"""A local server following vLLM's runtime LoRA API, for `llmops finetune publish vllm` tests.

It follows the "Dynamically serving LoRA Adapters" section of vLLM's LoRA docs
(https://docs.vllm.ai/en/latest/features/lora/, docs/features/lora.md in vllm-project/vllm):

- the two endpoints exist only when the server runs with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True
  (``runtime_updating``); otherwise they are not routed and FastAPI answers 404
  ``{"detail": "Not Found"}``, as vLLM's own FastAPI app does;
- ``POST /v1/load_lora_adapter`` ``{"lora_name", "lora_path"}`` answers 200 with the plain
  text ``Success: LoRA adapter '<name>' added successfully.``; a name already loaded, a missing
  field, or a path without an adapter answer 400 with vLLM's error object
  (``{"error": {"message", "type", "param", "code"}}``, or with ``flat_errors`` the older
  ``{"object": "error", "message", "type", "code"}``);
- ``POST /v1/unload_lora_adapter`` ``{"lora_name"}`` answers 200 ``Success: LoRA adapter
  '<name>' removed successfully.``, or 404 when the name is not loaded;
- ``GET /v1/models`` lists the base model and every loaded adapter (``parent`` = base model);
- with ``api_key`` set, /v1 requests without ``Authorization: Bearer <key>`` get 401
  ``{"error": "Unauthorized"}`` (vLLM's --api-key).

The messages are modelled on vLLM's ``serving_models.py``. ``delay_s`` stalls every request
(a server that does not answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from tests.stubs.openai_server import serve_app


@dataclass
class Behaviour:
    base_model: str = "tiny-base"
    runtime_updating: bool = True
    api_key: str | None = None
    flat_errors: bool = False
    delay_s: float = 0.0
    loaded: dict[str, str] = field(default_factory=dict)  # lora_name -> lora_path
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _error(behaviour: Behaviour, status: int, message: str, kind: str) -> JSONResponse:
    if behaviour.flat_errors:
        body: dict[str, Any] = {"object": "error", "message": message, "type": kind}
        return JSONResponse({**body, "param": None, "code": status}, status)
    error = {"message": message, "type": kind, "param": None, "code": status}
    return JSONResponse({"error": error}, status)


def make_app(behaviour: Behaviour) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        wanted = f"Bearer {behaviour.api_key}"
        if behaviour.api_key and request.headers.get("authorization") != wanted:
            return JSONResponse({"error": "Unauthorized"}, 401)
        response: Response = await call_next(request)
        return response

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [{"id": behaviour.base_model, "object": "model", "parent": None}]
        for name, path in behaviour.loaded.items():
            data.append({"id": name, "object": "model", "root": path, "parent": data[0]["id"]})
        return {"object": "list", "data": data}

    if behaviour.runtime_updating:
        _add_lora_routes(app, behaviour)
    return app


def _add_lora_routes(app: FastAPI, behaviour: Behaviour) -> None:
    @app.post("/v1/load_lora_adapter", response_model=None)
    async def load(request: Request) -> Response:
        body = await request.json()
        behaviour.requests.append(("load", body))
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            message = "Both 'lora_name' and 'lora_path' must be provided."
            return _error(behaviour, 400, message, "BadRequestError")
        if name in behaviour.loaded:
            message = f"The lora adapter '{name}' has already been loaded."
            return _error(behaviour, 400, message, "BadRequestError")
        if not (Path(path) / "adapter_config.json").is_file():
            message = f"Loading lora {name} failed: No adapter found for {path}"
            return _error(behaviour, 400, message, "BadRequestError")
        behaviour.loaded[name] = path
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    @app.post("/v1/unload_lora_adapter", response_model=None)
    async def unload(request: Request) -> Response:
        body = await request.json()
        behaviour.requests.append(("unload", body))
        name = body.get("lora_name")
        if not name:
            message = "'lora_name' needs to be provided to unload a LoRA adapter."
            return _error(behaviour, 400, message, "BadRequestError")
        if name not in behaviour.loaded:
            message = f"The lora adapter '{name}' cannot be found."
            return _error(behaviour, 404, message, "NotFoundError")
        del behaviour.loaded[name]
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")


@contextmanager
def serve(behaviour: Behaviour) -> Iterator[str]:
    """Run the stub on a free loopback port; yields its root URL (no /v1)."""
    with serve_app(make_app(behaviour)) as root:
        yield root
