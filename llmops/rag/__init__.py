"""Retrieval: loaders, chunkers, embedders, vector stores, filters, retrieval and the
incremental record keeping that keeps an index in step with its sources."""
