"""PDF files: one document per page that has text, with its page number and the parser that
read it. pypdf reads first; where it fails (some real filings stop it with "Reached maximum
array element count"), pypdfium2 reads the whole file or just the pages pypdf could not."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from llmops.deps import require
from llmops.errors import LoadError
from llmops.rag.loaders.base import NoSettings
from llmops.registry import register
from llmops.types import Document

log = logging.getLogger(__name__)

Pages = list[tuple[str, str]]
"""(text, parser) of each page, in order."""


def _title(value: object) -> str:
    title = str(value or "").strip()
    return "" if title.lower() == "untitled" else title


def _failure(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _pypdf_page(page: Any) -> str | None:
    """The page's text, or None where pypdf fails on it."""
    try:
        return page.extract_text() or ""
    except Exception as exc:  # pypdf raises many kinds for a damaged page
        log.debug("pypdf failed on a page: %s", _failure(exc))
        return None


def _read_pypdf(pypdf: Any, path: Path) -> tuple[str, list[str | None]]:
    """(title, text of each page or None); raises whatever pypdf raises for the file."""
    reader = pypdf.PdfReader(str(path))
    title = _title(reader.metadata.title) if reader.metadata else ""
    return title, [_pypdf_page(page) for page in reader.pages]


def _read_pdfium(pdfium: Any, path: Path) -> tuple[str, list[str]]:
    """(title, text of each page) with PDFium; raises PdfiumError for a file it cannot open."""
    with pdfium.PdfDocument(str(path)) as pdf:
        title = _title(pdf.get_metadata_dict().get("Title"))
        texts = []
        for page in pdf:
            textpage = page.get_textpage()
            texts.append(textpage.get_text_bounded().replace("\r\n", "\n").replace("\r", "\n"))
            textpage.close()
            page.close()
    return title, texts


def _read_fallback(path: Path, source: str, pypdf_failure: str) -> tuple[str, list[str]]:
    """PDFium's (title, pages) where pypdf failed; LoadError when PDFium fails too."""
    log.warning("%s: pypdf failed (%s); reading it with pypdfium2", source, pypdf_failure)
    pdfium = require("pypdfium2", "rag")  # MissingDependency is not the file's fault
    try:
        return _read_pdfium(pdfium, path)
    except Exception as exc:  # PdfiumError, or what PDFium raises for a damaged file
        reason = f"pypdf: {pypdf_failure}; pypdfium2: {_failure(exc)}"
        raise LoadError(source, f"unreadable PDF: {reason}") from None


def _read(path: Path, source: str) -> tuple[str, Pages]:
    """(title, pages): pypdf's text where it has it, PDFium's elsewhere."""
    pypdf = require("pypdf", "rag")  # MissingDependency is not the file's fault
    try:
        title, texts = _read_pypdf(pypdf, path)
    except Exception as exc:  # pypdf raises many kinds for a damaged file
        title, fallback = _read_fallback(path, source, _failure(exc))
        return title, [(text, "pypdfium2") for text in fallback]
    failed = [number for number, text in enumerate(texts, 1) if text is None]
    if not failed:
        return title, [(text or "", "pypdf") for text in texts]
    _, fallback = _read_fallback(path, source, f"on pages {failed}")
    fallback += [""] * (len(texts) - len(fallback))  # should PDFium count fewer pages
    return title, [
        (text, "pypdf") if text is not None else (fallback[i], "pypdfium2")
        for i, text in enumerate(texts)
    ]


@register(
    "loader",
    "pdf",
    summary="PDF via pypdf (pypdfium2 where pypdf fails): one document per page",
    extra="rag",
    requires=("pypdf", "pypdfium2"),
)
class PdfLoader:
    Config = NoSettings
    extensions = (".pdf",)

    def __init__(self, config: NoSettings | None = None) -> None:
        self.config = config or NoSettings()

    def load(self, path: Path, source: str) -> list[Document]:
        title, pages = _read(path, source)
        documents = []
        for number, (text, parser) in enumerate(pages, 1):
            if text.strip():
                meta: dict[str, str | int] = {"page": number, "parser": parser}
                if title:
                    meta["title"] = title
                documents.append(Document(f"{source}#page={number}", text, source, meta))
        return documents
