"""PDF files with pypdf: one document per page that has text, with its page number."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmops.deps import require
from llmops.errors import LoadError
from llmops.rag.loaders.base import NoSettings
from llmops.registry import register
from llmops.types import Document


def _read(pypdf: Any, path: Path) -> tuple[str, list[str]]:
    """(title, text of each page); raises whatever pypdf raises for a damaged file."""
    reader = pypdf.PdfReader(str(path))
    title = str(reader.metadata.title or "").strip() if reader.metadata else ""
    pages = [page.extract_text() or "" for page in reader.pages]
    return ("" if title.lower() == "untitled" else title), pages


@register(
    "loader",
    "pdf",
    summary="PDF via pypdf: one document per page",
    extra="rag",
    requires=("pypdf",),
)
class PdfLoader:
    Config = NoSettings
    extensions = (".pdf",)

    def __init__(self, config: NoSettings | None = None) -> None:
        self.config = config or NoSettings()

    def load(self, path: Path, source: str) -> list[Document]:
        pypdf = require("pypdf", "rag")  # MissingDependency is not the file's fault
        try:
            title, pages = _read(pypdf, path)
        except Exception as exc:  # pypdf raises many kinds for a damaged file
            reason = str(exc) or type(exc).__name__
            raise LoadError(source, f"unreadable PDF: {reason}") from None
        documents = []
        for number, text in enumerate(pages, 1):
            if text.strip():
                meta: dict[str, str | int] = {"page": number}
                if title:
                    meta["title"] = title
                documents.append(Document(f"{source}#page={number}", text, source, meta))
        return documents
