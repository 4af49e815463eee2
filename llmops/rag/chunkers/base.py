"""Chunk construction shared by every chunker: stable ids and inherited metadata."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from llmops.types import Chunk, Document, Metadata


def chunk_id(document_id: str, text: str, ordinal: int) -> str:
    """Stable id from the document and the chunk's content.

    ``ordinal`` counts earlier chunks of the same document with identical text, so repeated
    boilerplate still gets distinct ids while an edit elsewhere leaves this id unchanged.
    """
    digest = hashlib.sha256(f"{document_id}\x1f{ordinal}\x1f{text}".encode()).hexdigest()
    return digest[:32]


def make_chunks(document: Document, pieces: Iterable[tuple[str, Metadata]]) -> list[Chunk]:
    """Turn (text, extra metadata) pieces of ``document`` into chunks with stable ids."""
    seen: dict[str, int] = {}
    chunks: list[Chunk] = []
    for text in pieces:
        body, extra = text
        if not body.strip():
            continue
        ordinal = seen.get(body, 0)
        seen[body] = ordinal + 1
        chunks.append(
            Chunk(
                id=chunk_id(document.id, body, ordinal),
                document_id=document.id,
                text=body,
                source=document.source,
                index=len(chunks),
                metadata={**document.metadata, **extra},
            )
        )
    return chunks
