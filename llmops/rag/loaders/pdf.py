"""PDF files: one document per page that has text, with its page number and the parser that
read it. pypdf reads first; where it fails (some real filings stop it with "Reached maximum
array element count"), pypdfium2 reads the whole file or just the pages pypdf could not.

A file is refused (skipped and reported) when it has more than ``max_pages`` pages, when
reading it takes longer than ``timeout_s`` (checked between pages), or when pypdf's own
safety limits stop it (a compressed stream inflating past 75 MB, a "zip bomb"): such a file
is not handed to PDFium, which has no such limits."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmops.deps import require
from llmops.errors import LoadError
from llmops.rag.loaders.base import Deadline, setting
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


class PdfSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_pages: int = Field(
        10_000, ge=1, description="PDFs with more pages are skipped and reported."
    )
    timeout_s: float = Field(
        300.0, gt=0, description="Reading one PDF longer than this skips it (checked per page)."
    )


@dataclass(frozen=True)
class _Limits:
    """One file's limits while it is read."""

    settings: PdfSettings
    source: str
    deadline: Deadline

    def pages(self, count: int) -> None:
        """LoadError when the file has more pages than allowed."""
        if count > self.settings.max_pages:
            raise LoadError(
                self.source,
                f"PDF has {count:,} pages, over the limit of {self.settings.max_pages:,}: "
                f"skipped (raise it: {setting('pdf', '.pdf', 'max_pages')})",
            )


# pypdf's LimitReachedError for data that inflates past its limits (a "zip bomb"); its other
# limits (array element counts, ...) stop some real files that PDFium then reads well.
_INFLATES = re.compile(
    r"decompress|decoding exceeded|stream length|declared size|image size|array-based stream",
    re.IGNORECASE,
)


def _inflates(pypdf: Any, exc: Exception) -> bool:
    return isinstance(exc, pypdf.errors.LimitReachedError) and bool(_INFLATES.search(str(exc)))


def _limit_reached(source: str, exc: Exception) -> LoadError:
    return LoadError(
        source,
        f"PDF refused by pypdf's safety limits ({_failure(exc)}): a compressed stream or an "
        "object too large to read safely; not retried with pypdfium2",
    )


def _pypdf_page(pypdf: Any, page: Any, limits: _Limits) -> str | None:
    """The page's text, or None where pypdf fails on it; LoadError past a limit."""
    limits.deadline.check()
    try:
        return page.extract_text() or ""
    except Exception as exc:  # pypdf raises many kinds for a damaged page
        if _inflates(pypdf, exc):
            raise _limit_reached(limits.source, exc) from None
        log.debug("pypdf failed on a page: %s", _failure(exc))
        return None


def _read_pypdf(pypdf: Any, path: Path, limits: _Limits) -> tuple[str, list[str | None]]:
    """(title, text of each page or None); LoadError past a limit, else raises whatever pypdf
    raises for the file."""
    try:
        reader = pypdf.PdfReader(str(path))
        limits.pages(len(reader.pages))
        title = _title(reader.metadata.title) if reader.metadata else ""
    except Exception as exc:
        if _inflates(pypdf, exc):
            raise _limit_reached(limits.source, exc) from None
        raise
    return title, [_pypdf_page(pypdf, page, limits) for page in reader.pages]


def _read_pdfium(pdfium: Any, path: Path, limits: _Limits) -> tuple[str, list[str]]:
    """(title, text of each page) with PDFium; LoadError past a limit, PdfiumError for a file
    it cannot open."""
    with pdfium.PdfDocument(str(path)) as pdf:
        limits.pages(len(pdf))
        title = _title(pdf.get_metadata_dict().get("Title"))
        texts = []
        for page in pdf:
            limits.deadline.check()
            textpage = page.get_textpage()
            texts.append(textpage.get_text_bounded().replace("\r\n", "\n").replace("\r", "\n"))
            textpage.close()
            page.close()
    return title, texts


def _read_fallback(path: Path, limits: _Limits, pypdf_failure: str) -> tuple[str, list[str]]:
    """PDFium's (title, pages) where pypdf failed; LoadError when PDFium fails too."""
    source = limits.source
    log.warning("%s: pypdf failed (%s); reading it with pypdfium2", source, pypdf_failure)
    pdfium = require("pypdfium2", "rag")  # MissingDependency is not the file's fault
    try:
        return _read_pdfium(pdfium, path, limits)
    except LoadError:
        raise
    except Exception as exc:  # PdfiumError, or what PDFium raises for a damaged file
        reason = f"pypdf: {pypdf_failure}; pypdfium2: {_failure(exc)}"
        raise LoadError(source, f"unreadable PDF: {reason}") from None


def _read(path: Path, limits: _Limits) -> tuple[str, Pages]:
    """(title, pages): pypdf's text where it has it, PDFium's elsewhere."""
    pypdf = require("pypdf", "rag")  # MissingDependency is not the file's fault
    try:
        title, texts = _read_pypdf(pypdf, path, limits)
    except LoadError:
        raise
    except Exception as exc:  # pypdf raises many kinds for a damaged file
        title, fallback = _read_fallback(path, limits, _failure(exc))
        return title, [(text, "pypdfium2") for text in fallback]
    failed = [number for number, text in enumerate(texts, 1) if text is None]
    if not failed:
        return title, [(text or "", "pypdf") for text in texts]
    _, fallback = _read_fallback(path, limits, f"on pages {failed}")
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
    Config = PdfSettings
    extensions = (".pdf",)

    def __init__(self, config: PdfSettings | None = None) -> None:
        self.config = config or PdfSettings()

    def load(self, path: Path, source: str) -> list[Document]:
        timeout = setting("pdf", ".pdf", "timeout_s")
        deadline = Deadline(self.config.timeout_s, source, timeout)
        title, pages = _read(path, _Limits(self.config, source, deadline))
        documents = []
        for number, (text, parser) in enumerate(pages, 1):
            if text.strip():
                meta: dict[str, str | int] = {"page": number, "parser": parser}
                if title:
                    meta["title"] = title
                documents.append(Document(f"{source}#page={number}", text, source, meta))
        return documents
