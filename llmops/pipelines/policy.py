"""The one request policy. Every face — HTTP ``/query`` and ``/v1/chat/completions``, the CLI,
the Python API — hands its question and ``QueryOptions`` to the service, which admits them
here before any work: the limits of ``server:`` in the config, finite numbers, and the
request's deadline. No face can skip it, because none reaches the pipeline another way."""

from __future__ import annotations

import math
import time
from dataclasses import replace

from llmops.config.schema import ServerConfig
from llmops.errors import InvalidRequest
from llmops.pipelines.query import QueryOptions


class RequestPolicy:
    def __init__(self, limits: ServerConfig) -> None:
        self.limits = limits

    def admit(self, question: str, options: QueryOptions) -> tuple[str, QueryOptions]:
        """The stripped question and the options with their deadline set; a request outside
        the limits raises ``InvalidRequest`` saying which limit and how to change it."""
        question = question.strip()
        self._check_question(question)
        self._check_history(options)
        self._check_numbers(options)
        timeout = self.limits.request_timeout_s
        deadline = options.deadline or time.monotonic() + timeout
        return question, replace(options, deadline=deadline)

    def _check_question(self, question: str) -> None:
        if not question:
            raise InvalidRequest("the question is empty")
        limit = self.limits.max_question_chars
        if len(question) > limit:
            raise InvalidRequest(
                f"the question is {len(question)} characters; the limit is {limit} "
                "(server.max_question_chars)"
            )

    def _check_history(self, options: QueryOptions) -> None:
        messages, most = len(options.history) + 1, self.limits.max_messages
        if messages > most:
            raise InvalidRequest(
                f"the conversation has {messages} messages; the limit is {most} "
                "(server.max_messages): send fewer turns"
            )
        size, limit = sum(len(m.content) for m in options.history), self.limits.max_history_chars
        if size > limit:
            raise InvalidRequest(
                f"the earlier conversation is {size} characters; the limit is {limit} "
                "(server.max_history_chars): send fewer or shorter turns"
            )

    def _check_numbers(self, options: QueryOptions) -> None:
        top_k, limit = options.top_k, self.limits.max_top_k
        if top_k is not None and not 1 <= top_k <= limit:
            raise InvalidRequest(f"top_k {top_k} is outside 1..{limit} (server.max_top_k)")
        threshold = options.score_threshold
        if threshold is not None and not math.isfinite(threshold):
            raise InvalidRequest(f"score_threshold must be a finite number, not {threshold}")
        generation = options.generation
        for name in ("temperature", "top_p"):
            value = getattr(generation, name)
            if value is not None and not math.isfinite(value):
                raise InvalidRequest(f"{name} must be a finite number, not {value}")
        if generation.max_tokens is not None and generation.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be at least 1, not {generation.max_tokens}")
