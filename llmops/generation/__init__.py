"""Generators answer a question from retrieved chunks. ``extractive`` needs no model and is
the offline default; LLM backends plug in under the same ``Generator`` protocol."""

from llmops.generation import extractive as extractive
from llmops.generation import hf_local as hf_local
from llmops.generation import ollama as ollama
from llmops.generation import openai_compat as openai_compat
from llmops.generation import tgi as tgi
from llmops.generation import vllm as vllm
from llmops.generation import vllm_local as vllm_local
