"""The official openai SDK, pointed at `llmops up`, streams the answer and ends with its
sources; asked without streaming, it gets the same answer and sources."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import ConfigWriter

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_openai_sdk_streams_from_llmops_up(write_config: ConfigWriter, tmp_path: Path) -> None:
    port = _free_port()
    llmops = Path(sys.executable).parent / "llmops"
    log = (tmp_path / "up.log").open("w")
    process = subprocess.Popen(
        [str(llmops), "up", str(write_config()), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert process.poll() is None, (tmp_path / "up.log").read_text()
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "llmops up did not become ready"
            time.sleep(0.3)
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
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 3 and "restore" in text.lower()
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    sources = (last.model_extra or {})["sources"]
    assert sources[0]["source"] == "docs/backup.md" and sources[0]["cited"]
    assert whole.choices[0].message.content == text  # the same answer, not streamed
    assert (whole.model_extra or {})["sources"] == sources
