"""BM25 keyword index: bm25s's tokenizer (PyStemmer stems, stop words), an incremental inverted
index in memory (``postings``) and SQLite on disk (``storage``) under ``<data_dir>/sparse``.

Collections are loaded into memory on first use. Writers (ingestion's worker thread) are
serialised and write to disk before memory; readers score under a lock that a change holds
while it is applied, so they never see half of an upsert.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmops.deps import available, require
from llmops.errors import StorageError
from llmops.protocols import ChunkFilter
from llmops.rag.sparse.postings import Bm25Params, InvertedIndex, Method
from llmops.rag.sparse.storage import SparseStorage
from llmops.registry import register
from llmops.types import Chunk, ScoredChunk

StopwordList = Literal[
    "en", "en_plus", "de", "nl", "fr", "es", "pt", "it", "ru", "sv", "no", "zh", "tr", "ko", "da"
]


@register(
    "sparse",
    "bm25",
    summary="BM25 keyword index (bm25s tokenizer, PyStemmer), updated incrementally, on disk",
    extra="rag",
    requires=("bm25s", "Stemmer"),
)
class Bm25Index:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        k1: float = Field(1.2, gt=0, description="Term-frequency saturation.")
        b: float = Field(0.75, ge=0, le=1, description="Document-length normalisation.")
        method: Method = Field(
            "lucene", description="BM25 variant (idf and tf formulas), as named by bm25s."
        )
        stemmer: str | None = Field(
            "english", description="PyStemmer language (e.g. english, german); null: no stemming."
        )
        stopwords: StopwordList | list[str] | None = Field(
            "en", description="bm25s stop-word list by language code, your own list, or null."
        )

        @field_validator("stemmer")
        @classmethod
        def _known_language(cls, value: str | None) -> str | None:
            if value is not None and available("Stemmer"):
                languages = require("Stemmer", "rag").algorithms()
                if value not in languages:
                    raise ValueError(
                        f"unknown stemmer language '{value}'; allowed: {', '.join(languages)}"
                        " (or null for no stemming)"
                    )
            return value

    def __init__(self, config: Config, *, data_dir: Path, namespace: str) -> None:
        self.config = config
        self.namespace = namespace
        self.params = Bm25Params(config.k1, config.b, config.method)
        self._storage = SparseStorage(data_dir / "sparse" / "bm25.sqlite")
        self._indexes: dict[str, InvertedIndex] = {}
        self._write = threading.Lock()  # one change (or load) at a time
        self._read = threading.Lock()  # held while a change is applied in memory or scored
        self._local = threading.local()  # a PyStemmer object is not safe to share across threads
        self._bm25s: Any = None

    def start(self) -> None:
        # bm25s (and SciPy with it) is imported at the first tokenize, like a collection is
        # loaded at its first search: an ingestion that changes nothing needs neither
        self._storage.open()

    def close(self) -> None:
        with self._write, self._read:
            self._indexes.clear()
        self._storage.close()

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """Lower-cased words of two or more characters, stop words removed, stemmed."""
        if self._bm25s is None:
            self._bm25s = require("bm25s", "rag")
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None and self.config.stemmer:
            stemmer = self._local.stemmer = require("Stemmer", "rag").Stemmer(self.config.stemmer)
        tokens: list[list[str]] = self._bm25s.tokenize(
            list(texts),
            stopwords=self.config.stopwords,
            stemmer=stemmer,
            return_ids=False,
            show_progress=False,
        )
        return tokens

    def _forget_if_changed_elsewhere(self) -> None:
        """Another process wrote the file (``llmops ingest`` while a server runs): reload.

        Only one process writes at a time (ingestion's lock), so a writer that checks this
        first never encodes against a stale vocabulary.
        """
        if self._storage.changed_elsewhere():
            with self._read:
                self._indexes.clear()

    def _index(self, collection: str) -> InvertedIndex:
        """The collection in memory, loaded from disk on first use (caller holds ``_write``)."""
        self._forget_if_changed_elsewhere()
        index = self._indexes.get(collection)
        if index is None:
            index = InvertedIndex(self.params)
            index.restore(*self._storage.load(collection))
            with self._read:
                self._indexes[collection] = index
        return index

    def _loaded(self, collection: str) -> InvertedIndex:
        """The collection for a read; one that does not exist (dropped by a rebuild's swap
        while a query was on its way, or never built) is a ``StorageError``, never an empty
        index kept in memory."""
        self._forget_if_changed_elsewhere()
        index = self._indexes.get(collection)
        if index is not None:
            return index
        with self._write:
            if collection not in self._indexes and collection not in self.collections():
                raise StorageError(
                    str(self._storage.path),
                    f"the sparse index has no collection '{collection}'",
                    "run `llmops ingest` to rebuild the index from the sources",
                )
            return self._index(collection)

    def upsert(self, collection: str, chunks: Sequence[Chunk]) -> None:
        tokens = self.tokenize([c.text for c in chunks])
        with self._write:
            index = self._index(collection)
            encoded, new_terms = index.encode(chunks, tokens)
            self._storage.write(collection, new_terms, encoded)
            with self._read:
                index.apply(new_terms, encoded)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._write:
            self._forget_if_changed_elsewhere()
            self._storage.delete(collection, ids)
            index = self._indexes.get(collection)  # not loaded: disk is all there is to change
            if index is not None:
                with self._read:
                    index.remove(ids)

    def search(
        self,
        collection: str,
        queries: Sequence[str],
        top_k: int,
        where: ChunkFilter | None = None,
    ) -> list[list[ScoredChunk]]:
        if top_k < 1:
            return [[] for _ in queries]
        index = self._loaded(collection)
        tokens = self.tokenize(queries)
        with self._read:
            return [index.search(words, top_k, where) for words in tokens]

    def chunks(self, collection: str, ids: Sequence[str]) -> dict[str, Chunk]:
        index = self._loaded(collection)
        with self._read:
            return index.chunks(ids)

    def count(self, collection: str) -> int:
        return self._storage.count(collection)

    def ids(self, collection: str) -> set[str]:
        return self._storage.ids(collection)

    def collections(self) -> list[str]:
        return self._storage.collections()

    def drop(self, collection: str) -> None:
        with self._write:
            self._storage.drop(collection)
            with self._read:
                self._indexes.pop(collection, None)
