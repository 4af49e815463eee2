"""``EncoderThread.start(load=False)``: the model loads at its first use, once, whichever
thread uses it first, and always on the encoder thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from llmops.protocols import Vectors
from llmops.rag.embedders import EncoderThread
from llmops.rag.embedders.hashing import HashingEmbedder


class SlowToLoad(HashingEmbedder):
    """A model-free embedder whose ``start`` takes a while and counts its calls, and which
    refuses to work before it has started (as a real model would)."""

    def __init__(self) -> None:
        super().__init__(HashingEmbedder.Config(dimension=16))
        self.starts: list[str] = []

    def start(self) -> None:
        time.sleep(0.2)  # wide open for a second thread to start it again
        self.starts.append(threading.current_thread().name)

    def close(self) -> None:
        self.starts.clear()

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        assert self.starts, "used before start"
        return super().embed_documents(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        assert self.starts, "used before start"
        return super().count_tokens(texts)


@pytest.fixture
def encoder() -> Iterator[EncoderThread]:
    encoder = EncoderThread(SlowToLoad())
    encoder.start(load=False)
    yield encoder
    encoder.close()


def _inner(encoder: EncoderThread) -> SlowToLoad:
    assert isinstance(encoder.inner, SlowToLoad)
    return encoder.inner


def test_start_without_load_loads_nothing(encoder: EncoderThread) -> None:
    assert not encoder.loaded
    assert _inner(encoder).starts == []


def test_concurrent_first_uses_load_the_model_once_on_the_encoder_thread(
    encoder: EncoderThread,
) -> None:
    results: list[object] = []

    def count() -> None:
        results.append(encoder.count_tokens(["one two three"]))

    def embed() -> None:
        results.append(encoder.embed_documents(["one two three"]))

    threads = [threading.Thread(target=f) for f in (count, embed, count, embed)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _inner(encoder).starts == ["llmops-encoder"]
    assert encoder.loaded
    assert [3] in results and any(isinstance(r, np.ndarray) for r in results)


def test_reading_the_model_limits_loads_it(encoder: EncoderThread) -> None:
    assert encoder.max_seq_length == 512
    assert _inner(encoder).starts == ["llmops-encoder"]


async def test_an_async_query_loads_it_off_the_event_loop(encoder: EncoderThread) -> None:
    vector = await encoder.encode_query("one two")
    assert vector.shape == (16,)
    assert _inner(encoder).starts == ["llmops-encoder"]


def test_close_then_start_loads_again() -> None:
    encoder = EncoderThread(SlowToLoad())
    encoder.start()
    assert encoder.loaded and _inner(encoder).starts == ["llmops-encoder"]
    encoder.close()
    assert not encoder.loaded and _inner(encoder).starts == []
    encoder.start(load=False)
    encoder.embed_queries(["x"])
    assert _inner(encoder).starts == ["llmops-encoder"]
    encoder.close()
