"""Embedders turn text into vectors; the default is the bundled all-MiniLM-L6-v2 through
sentence-transformers. ``EncoderThread`` runs any embedder on one thread that owns the model,
batching concurrent queries."""

from llmops.rag.embedders import hashing as hashing
from llmops.rag.embedders import sentence_transformers as sentence_transformers
from llmops.rag.embedders.worker import EncoderThread as EncoderThread
