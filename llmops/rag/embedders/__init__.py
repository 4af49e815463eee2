"""Embedders turn text into vectors; the default is the bundled all-MiniLM-L6-v2 through
sentence-transformers. ``QueryBatcher`` batches concurrent query embeddings on one thread."""

from llmops.rag.embedders import hashing as hashing
from llmops.rag.embedders import sentence_transformers as sentence_transformers
from llmops.rag.embedders.batching import QueryBatcher as QueryBatcher
