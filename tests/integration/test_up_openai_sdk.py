"""The official openai SDK, pointed at `llmops up`, streams the answer and ends with its
sources; asked without streaming, it gets the same answer and sources."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import ConfigWriter
from tests.up_server import llmops_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_openai_sdk_streams_from_llmops_up(write_config: ConfigWriter) -> None:
    with llmops_up(write_config()) as (base, _):
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
        stream = client.chat.completions.create(
            model="testapp",
            messages=[{"role": "user", "content": "How do I restore a backup?"}],
            stream=True,
        )
        chunks = list(stream)
        whole = client.chat.completions.create(
            model="testapp", messages=[{"role": "user", "content": "How do I restore a backup?"}]
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 3 and "restore" in text.lower()
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    sources = (last.model_extra or {})["sources"]
    assert sources[0]["source"] == "docs/backup.md" and sources[0]["cited"]
    assert whole.choices[0].message.content == text  # the same answer, not streamed
    assert (whole.model_extra or {})["sources"] == sources
