"""Where work that runs on Ray finds its cluster: the ``ray`` sections of the config files."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from llmops.config.component import Strict

AUTO = "auto"
LOCAL = "local"
CLIENT_PREFIX = "ray://"


def host_port(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``ray://host:port`` or ``host:port``; ValueError when malformed."""
    host, sep, port = address.removeprefix(CLIENT_PREFIX).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"'{address}' is not a Ray address: use 'auto', 'local', ray://HOST:PORT "
            "(Ray Client, port 10001 by default) or HOST:PORT (the head's GCS, port 6379, "
            "from a node of the cluster)"
        )
    return host.strip("[]"), int(port)


def _ray_address(address: str) -> str:
    if address not in (AUTO, LOCAL):
        host_port(address)
    return address


RayAddress = Annotated[str, AfterValidator(_ray_address)]
"""``auto``, ``local``, ``ray://HOST:PORT`` or ``HOST:PORT``."""


class RayIngestConfig(Strict):
    """How ingestion runs on Ray (``ingest.engine: ray``)."""

    address: RayAddress = Field(
        AUTO,
        description="auto: the cluster this machine belongs to (`ray start`, RAY_ADDRESS), "
        "else a local Ray started here; local: always a Ray of this process's own; "
        "ray://HOST:10001: a remote cluster through Ray Client. Source files must be readable "
        "at the same paths on every node.",
    )
    num_cpus: int | None = Field(
        None, ge=1, le=4096, description="CPUs of a Ray started here (null: all of them)."
    )
    workers: int = Field(
        2,
        ge=1,
        le=1024,
        description="Ray actors that load, chunk and embed; each loads the embedding model "
        "once. Give each one CPU of the cluster (or cpus_per_worker).",
    )
    cpus_per_worker: float = Field(
        1.0, gt=0, le=256, description="CPUs Ray reserves for each worker (its torch threads)."
    )
    batch_size: int = Field(
        16,
        ge=1,
        le=100_000,
        description="Files one worker call loads, chunks and embeds together.",
    )


class IngestConfig(Strict):
    """Where ingestion loads, chunks and embeds the changed files. Discovery, the records and
    every write to the indexes stay with the process that runs ``llmops ingest``."""

    engine: Literal["local", "ray"] = Field(
        "local",
        description="local: threads in this process; ray: actors of a Ray cluster (pip install "
        "'llmops[ray]'), with the same chunk ids, records and incremental runs.",
    )
    ray: RayIngestConfig = Field(
        default_factory=lambda: RayIngestConfig(), description="Settings of the ray engine."
    )
