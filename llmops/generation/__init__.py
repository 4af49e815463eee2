"""Generators answer a question from retrieved chunks. ``extractive`` needs no model and is
the offline default; LLM backends plug in under the same ``Generator`` protocol."""

from llmops.generation import extractive as extractive
