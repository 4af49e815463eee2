"""Generators answer a question from retrieved chunks. ``extractive`` needs no model and is
the offline default; LLM backends plug in under the same ``Generator`` protocol."""

from llmops.generation import extractive as extractive
from llmops.generation import openai_compat as openai_compat
from llmops.generation import vllm as vllm
