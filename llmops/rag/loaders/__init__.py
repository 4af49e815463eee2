"""Loaders parse one file into documents (Markdown, MDX, text, HTML, PDF, JSON/JSONL, CSV);
``directory`` finds the files of a source with include/exclude globs."""

from llmops.rag.loaders import html as html
from llmops.rag.loaders import mdx as mdx
from llmops.rag.loaders import pdf as pdf
from llmops.rag.loaders import records as records
from llmops.rag.loaders import text as text
