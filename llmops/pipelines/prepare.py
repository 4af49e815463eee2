"""One source file loaded and chunked, ready to embed: the step every ingestion engine runs
(in this process, or on a Ray worker that built its own loaders and chunker from the config)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from llmops.errors import LoadError
from llmops.pipelines.discovery import SourceFile
from llmops.protocols import Chunker
from llmops.types import Chunk, Document

NO_TEXT = "no text"
TokenCounter = Callable[[Sequence[str]], list[int]]


@dataclass
class PreparedFile:
    """A file loaded and chunked (or the reason it was skipped), with each chunk's token count
    and the parser that read it (when its loader names one)."""

    file: SourceFile
    chunks: list[Chunk]
    error: str | None = None
    token_counts: list[int] = field(default_factory=list)
    parser: str | None = None


def prepare_file(f: SourceFile, chunker: Chunker, count_tokens: TokenCounter) -> PreparedFile:
    """Load and chunk one file; a file that cannot be read is returned with the reason."""
    if f.loader is None:
        return PreparedFile(f, [], no_loader(f))
    try:
        documents = f.loader.load(f.path, f.key)
    except LoadError as exc:
        return PreparedFile(f, [], exc.reason)
    except (OSError, UnicodeError, ValueError) as exc:
        return PreparedFile(f, [], f"{type(exc).__name__}: {exc}")
    unique: dict[str, Chunk] = {}
    for document in documents:
        for chunk in chunker.split(document):
            unique.setdefault(chunk.id, chunk)
    if not unique:  # empty, blank, or front matter only: recorded, and skipped until it changes
        return PreparedFile(f, [], NO_TEXT)
    chunks = list(unique.values())
    counts = count_tokens([c.text for c in chunks])
    return PreparedFile(f, chunks, None, counts, _parser(documents))


def no_loader(f: SourceFile) -> str:
    return f"no loader for '{f.path.suffix or f.path.name}' files"


def _parser(documents: list[Document]) -> str | None:
    """The parser(s) named in the documents' ``parser`` metadata (a PDF's pages may differ)."""
    names = sorted({str(d.metadata["parser"]) for d in documents if "parser" in d.metadata})
    return ", ".join(names) or None
