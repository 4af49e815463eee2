"""Our OpenAI-compatible API, driven by the official openai SDK."""

from __future__ import annotations

import openai
import pytest


def test_models_lists_the_app(sdk: openai.OpenAI) -> None:
    assert [m.id for m in sdk.models.list()] == ["testapp"]


def test_chat_completion_answers_the_last_user_message_with_sources(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="testapp",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What does the team edition cost?"},
            {"role": "assistant", "content": "..."},
            {"role": "user", "content": "How do I restore a backup?"},
        ],
        temperature=0,
    )
    message = completion.choices[0].message
    assert message.role == "assistant" and "restore" in (message.content or "").lower()
    extra = completion.model_extra or {}
    assert extra["sources"][0]["source"] == "docs/backup.md"
    assert extra["generator"] == "extractive" and completion.model == "testapp"


def test_unknown_model_is_a_clear_404(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="model 'gpt-4' not found"):
        sdk.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
