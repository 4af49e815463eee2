"""Per-request labels that the query path fills in and the HTTP metrics middleware reads
(the backend that answered, the variant) — a context variable, so no layer passes them."""

from __future__ import annotations

from contextvars import ContextVar

RequestLabels = dict[str, str]

_LABELS: ContextVar[RequestLabels | None] = ContextVar("llmops_request_labels", default=None)


def begin_request() -> RequestLabels:
    """Start collecting labels for the current request; returns the dict that fills up."""
    labels: RequestLabels = {}
    _LABELS.set(labels)
    return labels


def tag_request(**labels: str) -> None:
    """Add labels to the current request, if one is being collected."""
    current = _LABELS.get()
    if current is not None:
        current.update(labels)
