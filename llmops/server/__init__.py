"""The HTTP API: ``create_app(rag)`` builds a FastAPI app around a RAG instance (no module
globals). One router per resource; request and response schemas in ``schemas``."""

from llmops.server.app import create_app as create_app
