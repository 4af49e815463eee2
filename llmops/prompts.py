"""Prompt templates: sandboxed Jinja2 files named ``<name>.j2`` (for example ``answer.v1.j2``).

A template renders the whole conversation; lines ``<|system|>``, ``<|user|>`` and
``<|assistant|>`` start a new message of that role.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from llmops.errors import ComponentError
from llmops.types import Message, ScoredChunk

_ROLE = re.compile(r"^<\|(system|user|assistant)\|>\s*$", re.M)


BUNDLED = Path(__file__).resolve().parent / "templates"


def find_prompt_dirs(base_dir: Path, explicit: str | None) -> list[Path]:
    """Where templates are looked up, first match wins: ``explicit`` (relative to the config)
    or the nearest ``prompts/`` at or above the config, then the templates bundled with llmops."""
    if explicit:
        return [(base_dir / explicit).resolve(), BUNDLED]
    for folder in (base_dir, *base_dir.parents[:3]):
        if (folder / "prompts").is_dir():
            return [(folder / "prompts").resolve(), BUNDLED]
    return [BUNDLED]


class PromptLibrary:
    def __init__(self, directories: Sequence[Path]) -> None:
        self.directories = list(directories)
        self._env = SandboxedEnvironment(
            loader=FileSystemLoader([str(d) for d in self.directories]),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            auto_reload=False,  # no stat() per render; restart to pick up edited templates
        )

    def names(self) -> list[str]:
        return sorted(p.name.removesuffix(".j2") for d in self.directories for p in d.glob("*.j2"))

    def check(self, name: str) -> None:
        try:
            self._env.get_template(f"{name}.j2")
        except TemplateNotFound:
            where = ", ".join(str(d) for d in self.directories) or "(no prompts/ folder found)"
            raise ComponentError(
                f"prompt '{name}' not found in {where}; available: {', '.join(self.names())}"
            ) from None

    def render(
        self,
        name: str,
        question: str,
        context: Sequence[ScoredChunk],
        history: Sequence[Message] = (),
    ) -> list[Message]:
        """The template's messages; earlier turns of a conversation (``history``) go after its
        system messages, as messages of their own (never through the template)."""
        text = self._env.get_template(f"{name}.j2").render(question=question, context=context)
        messages = split_messages(text)
        lead = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
        return [*messages[:lead], *history, *messages[lead:]]


def split_messages(text: str) -> list[Message]:
    parts = _ROLE.split(text)
    if len(parts) == 1:
        return [Message("user", text.strip())]
    return [
        Message(role, body.strip()) for role, body in zip(parts[1::2], parts[2::2], strict=True)
    ]
