"""An app with an experiment, over HTTP: every answer names its variant, a user keeps theirs,
feedback credits the variant that served (once), concurrent feedback loses nothing, and
GET /experiments reports traffic, rewards and posteriors; bad configs and bad feedback get
clear errors."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.errors import ConfigError
from llmops.server import create_app
from tests.conftest import HASHING, ConfigWriter

QUESTION = {"question": "How do I restore a backup?"}


def experiment(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "prompt-test",
        "variants": {"control": {}, "wide": {"retrieval": {"top_k": 6}}},
        "weights": {"control": 50, "wide": 50},
        **overrides,
    }


@pytest.fixture
def make_client(write_config: ConfigWriter) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(**sections: Any) -> TestClient:
        rag = RAG.from_config(write_config(embedder=HASHING, **sections))
        rag.ingest()
        client = TestClient(create_app(rag))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_users_keep_their_variant_and_answers_name_it(make_client: Any) -> None:
    client = make_client(experiment=experiment())
    seen: dict[str, set[str]] = {}
    for i in range(60):
        user = f"user-{i % 12}"
        body = client.post("/query", json=QUESTION, headers={"x-user-id": user}).json()
        seen.setdefault(user, set()).add(body["variant"])
        assert len(body["sources"]) == (6 if body["variant"] == "wide" else 4)
    assert all(len(variants) == 1 for variants in seen.values())
    assert {v for variants in seen.values() for v in variants} == {"control", "wide"}
    by_body = client.post("/query", json={**QUESTION, "user": "user-3"}).json()
    assert {by_body["variant"]} == seen["user-3"]


def test_feedback_credits_the_serving_variant_once(make_client: Any) -> None:
    client = make_client(experiment=experiment(strategy="thompson", weights=None))
    answered = client.post("/query", json=QUESTION)
    request_id, variant = answered.headers["x-request-id"], answered.json()["variant"]
    rated = client.post("/feedback", json={"request_id": request_id, "thumbs": "up"})
    assert rated.status_code == 200 and rated.json()["variant"] == variant
    again = client.post("/feedback", json={"request_id": request_id, "thumbs": "up"})
    assert again.status_code == 404 and "already rated" in again.json()["detail"]
    unknown = client.post("/feedback", json={"request_id": "nope", "reward": 1})
    assert unknown.status_code == 404 and "'nope'" in unknown.json()["detail"]
    half = client.post("/query", json=QUESTION).headers["x-request-id"]
    not_binary = client.post("/feedback", json={"request_id": half, "reward": 0.5})
    assert not_binary.status_code == 400 and "binary feedback" in not_binary.json()["detail"]
    both = client.post("/feedback", json={"request_id": half, "reward": 1, "thumbs": "up"})
    assert both.status_code == 422
    report = client.get("/experiments").json()
    assert report["strategy"] == "thompson"
    assert report["variants"][variant]["rewards"] == 1
    assert sum(v["requests"] for v in report["variants"].values()) == 2


def test_concurrent_feedback_loses_nothing(make_client: Any) -> None:
    client = make_client(experiment=experiment())
    served = [client.post("/query", json=QUESTION) for _ in range(40)]
    ids = [(r.headers["x-request-id"], r.json()["variant"]) for r in served]

    async def rate_all() -> list[int]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            replies = await asyncio.gather(
                *(http.post("/feedback", json={"request_id": i, "thumbs": "up"}) for i, _ in ids)
            )
        return [r.status_code for r in replies]

    assert asyncio.run(rate_all()) == [200] * 40
    report = client.get("/experiments").json()["variants"]
    expected = Counter(variant for _, variant in ids)
    assert {name: v["rewards"] for name, v in report.items()} == {
        name: expected[name] for name in ("control", "wide")
    }
    assert all(v["posterior_mean"] is None or v["posterior_mean"] > 0.5 for v in report.values())


DEAD: dict[str, Any] = {"type": "openai_compat", "model": "m", "max_retries": 0}
DEAD["base_url"] = "http://127.0.0.1:9/v1"  # nothing listens there


@pytest.mark.parametrize(
    ("variant", "status", "generator"),
    [
        ({"generator": DEAD, "fallbacks": [{"type": "extractive"}]}, 200, "extractive"),
        ({"generator": DEAD}, 200, "extractive"),  # the app's fallbacks
        ({"generator": DEAD, "fallbacks": []}, 503, None),  # none at all: backend down
    ],
)
def test_a_variant_falls_back_on_its_own_chain_or_the_apps(
    make_client: Any, variant: dict[str, Any], status: int, generator: str | None
) -> None:
    section = experiment(variants={"control": {}, "wide": variant})
    client = make_client(
        experiment={**section, "weights": {"control": 0, "wide": 100}},
        fallbacks=[{"type": "extractive", "min_score": 0.0}],
    )
    reply = client.post("/query", json=QUESTION)
    assert reply.status_code == status, reply.text
    if generator is not None:
        assert (reply.json()["variant"], reply.json()["generator"]) == ("wide", generator)


def test_an_app_without_experiment_says_so(make_client: Any) -> None:
    client = make_client()
    assert client.post("/query", json=QUESTION).json()["variant"] == "default"
    assert client.get("/experiments").status_code == 404


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (experiment(weights={"control": 0.5, "wide": 0.6}), "weights sum to 1.1"),
        (experiment(weights={"control": 50, "other": 50}), "unknown ['other'], missing ['wide']"),
        (experiment(variants={"only": {}}), "at least 2"),
        (experiment(variants={"a": {}, "b": {"prompt": "nope.v9"}}), "nope.v9"),
        (experiment(variants={"a": {}, "b": {"retrieval": {"top_kk": 3}}}), "top_kk"),
        (experiment(variants={"a": {}, "b": {"generator": {"type": "gpt"}}}), "gpt"),
        (experiment(variants={"control": {}, "wide": {"fallbacks": []}}), "`generator:` too"),
        (
            experiment(variants={"control": {}, "wide": {"adapter": "support"}}),
            "the extractive generator serves no LoRA adapters",
        ),
        (
            experiment(
                variants={
                    "control": {},
                    "wide": {
                        "adapter": "nope",
                        "generator": {
                            "type": "hf_local",
                            "model": "missing-model",
                            "adapters": {"support": "models:/x@production"},
                        },
                    },
                }
            ),
            "no adapter 'nope' in the generator's adapters",
        ),
        (experiment(strategy="canary", weights=None), "'canary' needs a `canary:` section"),
        (experiment(canary={"variant": "wide"}), "needs strategy 'canary'"),
        (
            experiment(strategy="canary", weights=None, canary={"variant": "nope"}),
            "canary.variant 'nope' is not one of",
        ),
        (
            experiment(
                strategy="canary", weights=None, canary={"variant": "wide", "stages": [1, 0.5]}
            ),
            "must rise",
        ),
        (
            experiment(
                strategy="shadow",
                weights=None,
                shadow={"variant": "wide"},
                variants={"a": {}, "b": {}, "wide": {}},
            ),
            "compares two variants",
        ),
    ],
)
def test_bad_experiments_are_config_errors(
    write_config: ConfigWriter, tmp_path: Path, section: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        RAG.from_config(write_config(embedder=HASHING, experiment=section))
    assert message in str(caught.value)
    assert "experiment" in str(caught.value)
