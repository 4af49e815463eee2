"""Reading an LLM's answer: which context passages it cites, and whether it declined."""

from __future__ import annotations

import re

from llmops.types import Generation, GenerationRequest, Usage

_CITATION = re.compile(r"\[(\d{1,3})\]")
_DECLINES = ("i don't know", "i do not know", "not in the provided", "cannot answer")


def cited_positions(text: str, context_size: int) -> tuple[int, ...]:
    """The distinct [n] markers in ``text`` that point into a context of ``context_size``."""
    found = {int(n) for n in _CITATION.findall(text)}
    return tuple(sorted(n for n in found if 1 <= n <= context_size))


def declined(text: str) -> bool:
    """True when the answer says the context does not contain it (as prompts ask it to)."""
    lowered = text.strip().lower()
    return any(phrase in lowered for phrase in _DECLINES)


def generation_from_text(
    name: str, text: str, request: GenerationRequest, usage: Usage | None = None
) -> Generation:
    """An LLM's finished answer as a ``Generation``: its citations and whether it declined."""
    return Generation(
        text=text,
        generator=name,
        cited=cited_positions(text, len(request.context)),
        abstained=declined(text),
        usage=usage or Usage(),
    )
