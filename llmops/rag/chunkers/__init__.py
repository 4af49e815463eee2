"""Chunkers split documents into chunks with stable ids: ``recursive`` (characters),
``markdown`` (heading-aware) and ``token`` (counted with the embedder's tokenizer)."""

from llmops.rag.chunkers import markdown as markdown
from llmops.rag.chunkers import recursive as recursive
