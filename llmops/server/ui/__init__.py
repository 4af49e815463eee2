"""The web console at ``/ui``: static pages shipped in the package (no build step, nothing
from a CDN) whose JavaScript calls the app's own JSON routes. The pages and their assets are
open; the data routes they call keep their scopes, and the console sends the API key the user
typed in (kept in the tab's sessionStorage) as ``Authorization: Bearer``. Each app names the
pages it has data for (``GET /ui/pages``); the console shows those only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PREFIX = "/ui"
# the pages may only talk to their own origin and run their own scripts
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
RAG_PAGES = ("playground", "requests", "experiments", "drift", "evals")
MODEL_PAGES = ("models",)
"""A model app's /experiments and drift report differ in shape from the RAG app's pages."""


def install(app: FastAPI, pages: Sequence[str], check: str) -> None:
    """Serve the console: ``/ui`` (the page; its sections are ``#playground`` and the like),
    ``/ui/static/...`` (its script and style sheet) and ``/ui/pages``: the ``pages`` this app
    has, the first one the default, and ``check``, a route of the app that needs a key (the
    console calls it to learn whether the key typed in works). Not in the OpenAPI document."""

    @app.get(PREFIX + "/pages", include_in_schema=False)
    async def console_pages() -> dict[str, object]:
        return {"pages": list(pages), "check": check}

    @app.get(PREFIX, include_in_schema=False)
    async def console_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)

    @app.get(PREFIX + "/", include_in_schema=False)
    async def console_slash() -> RedirectResponse:
        return RedirectResponse(PREFIX)

    app.mount(PREFIX + "/static", StaticFiles(directory=STATIC), name="console-static")
