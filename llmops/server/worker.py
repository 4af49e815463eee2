"""The app factory each uvicorn worker process calls when `llmops up` runs several workers.

The parent process validates the config and brings the index up to date first; it hands the
config path and the worker count over in the environment.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from llmops.server.app import create_app
from llmops.service import RAG

CONFIG_ENV = "LLMOPS_CONFIG"
WORKERS_ENV = "LLMOPS_WORKERS"


def app() -> FastAPI:
    rag = RAG.from_config(os.environ[CONFIG_ENV])
    return create_app(rag, workers=int(os.environ[WORKERS_ENV]), freeze_heap=True)
