"""Rerankers re-score the fused candidates of a search against the query; the built-in one is
a sentence-transformers cross-encoder loaded from a local folder (none is bundled)."""

from llmops.rag.rerankers import cross_encoder as cross_encoder
