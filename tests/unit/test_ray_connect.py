"""``llmops.ray_cluster.connect``: how an address maps onto ``ray.init`` (a recording stand-in
for the ``ray`` module), and an address where nothing answers, refused before Ray waits."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import pytest

from llmops import ray_cluster
from llmops.errors import ComponentError

NO_CLUSTER = "Could not find any running Ray instance."


class FakeRay(SimpleNamespace):
    """Records ``init`` calls; ``auto`` finds a cluster only when ``cluster_running``."""

    def __init__(self, cluster_running: bool) -> None:
        super().__init__(calls=[], cluster_running=cluster_running, started=False)

    def is_initialized(self) -> bool:
        return bool(self.started)

    def init(self, address: str, num_cpus: int | None = None, **_: Any) -> None:
        self.calls.append((address, num_cpus))
        if address == "auto" and not self.cluster_running:
            raise ConnectionError(NO_CLUSTER)
        if address == "auto" and num_cpus is not None:
            raise ValueError("When connecting to an existing cluster, num_cpus must not be set")
        self.started = True


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> FakeRay:
    ray = FakeRay(cluster_running=request.param)
    monkeypatch.setattr(ray_cluster, "require", lambda module, extra: ray)
    return ray


@pytest.mark.parametrize("fake", [False], indirect=True)
def test_auto_starts_a_local_ray_when_no_cluster_runs(fake: FakeRay) -> None:
    assert ray_cluster.connect("auto", num_cpus=2) is fake
    assert fake.calls == [("auto", None), ("local", 2)]


@pytest.mark.parametrize("fake", [True], indirect=True)
def test_auto_joins_a_running_cluster_without_bounding_its_cpus(fake: FakeRay) -> None:
    ray_cluster.connect("auto", num_cpus=2)
    assert fake.calls == [("auto", None)]
    ray_cluster.connect("auto", num_cpus=2)  # once per process
    assert len(fake.calls) == 1


@pytest.mark.parametrize("fake", [False], indirect=True)
def test_an_address_where_nothing_listens_fails_at_once(fake: FakeRay) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ComponentError, match=f"127.0.0.1:{port} does not answer"):
        ray_cluster.connect(f"ray://127.0.0.1:{port}")
    with pytest.raises(ComponentError, match="is not a Ray address"):
        ray_cluster.connect("head")
    assert fake.calls == []
