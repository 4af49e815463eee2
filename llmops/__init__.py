"""llmops: retrieval-augmented generation as an operated service.

``from llmops import RAG`` is the Python API (see ``llmops.service``); heavy modules load lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["RAG", "__version__"]

if TYPE_CHECKING:
    from llmops.service import RAG


def __getattr__(name: str) -> Any:
    if name == "RAG":
        from llmops.service import RAG

        return RAG
    raise AttributeError(name)
