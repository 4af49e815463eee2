"""Sparse (keyword) indexes kept beside the vectors: BM25 over the chunk texts, updated by the
same incremental ingestion as the vector store, searched with the same filters."""

from llmops.rag.sparse import bm25 as bm25
