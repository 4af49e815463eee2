"""Vector stores: named collections of chunk vectors searched by cosine similarity.
The default is Chroma embedded on disk in the app's data directory."""

from llmops.rag.stores import chroma as chroma
