"""PDF files with pypdf: one document per page that has text, with its page number."""

from __future__ import annotations

from pathlib import Path

from llmops.deps import require
from llmops.errors import LoadError
from llmops.rag.loaders.base import NoSettings
from llmops.registry import register
from llmops.types import Document


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
        self.config = config

    def load(self, path: Path, source: str) -> list[Document]:
        pypdf = require("pypdf", "rag")
        try:
            reader = pypdf.PdfReader(str(path))
            title = str((reader.metadata or {}).get("/Title") or "").strip()
            pages = [page.extract_text() or "" for page in reader.pages]
        except Exception as exc:  # pypdf raises many kinds for a damaged file
            raise LoadError(source, f"unreadable PDF ({type(exc).__name__}: {exc})") from None
        documents = []
        for number, text in enumerate(pages, 1):
            if text.strip():
                meta: dict[str, str | int] = {"page": number}
                if title:
                    meta["title"] = title
                documents.append(Document(f"{source}#page={number}", text, source, meta))
        return documents
