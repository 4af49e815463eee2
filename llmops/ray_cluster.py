"""Connecting to Ray, for the work that runs on it (ingestion, batch prediction, eval runs):
a cluster by address, or ``auto`` (the one this machine belongs to, else a local one started
here). One connection per process; usage stats are never sent."""

from __future__ import annotations

import logging
import os
import socket
from types import ModuleType
from typing import Any

from llmops.config.ray import AUTO, LOCAL, host_port
from llmops.deps import require
from llmops.errors import ComponentError

REACH_TIMEOUT_S = 5.0
FIX = (
    "start the cluster (`ray start --head` on the head node), check the host and port "
    "(Ray Client: ray://HEAD:10001; from a node of the cluster: HEAD:6379), or use 'auto'"
)


def connect(address: str = AUTO, num_cpus: int | None = None) -> ModuleType:
    """The ``ray`` module, initialised once: ``address`` is ``auto``, ``local`` or a cluster URL
    (``ray://head:10001``, or ``head:6379`` from a node of the cluster); ``num_cpus`` bounds a
    Ray started here. An unreachable cluster raises ``ComponentError`` naming the address."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = require("ray", extra="ray")
    if address not in (AUTO, LOCAL):
        _check_reachable(address)  # Ray itself waits 30 s (client) or forever (GCS) first
    if ray.is_initialized():
        return ray
    options: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
    }
    try:
        if address == LOCAL:
            ray.init(address=LOCAL, num_cpus=num_cpus, **options)
        elif address == AUTO:
            _join_or_start(ray, num_cpus, options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, ValueError) as exc:
        raise ComponentError(f"cannot connect to Ray at '{address}': {exc}; {FIX}") from exc
    return ray


def _join_or_start(ray: ModuleType, num_cpus: int | None, options: dict[str, Any]) -> None:
    """``ray.init(address="auto")`` raises when no cluster runs here; then start one."""
    try:
        ray.init(address=AUTO, **options)
    except ConnectionError:
        ray.init(address=LOCAL, num_cpus=num_cpus, **options)


def _check_reachable(address: str) -> None:
    try:
        host, port = host_port(address)
    except ValueError as exc:
        raise ComponentError(str(exc)) from None
    try:
        with socket.create_connection((host, port), timeout=REACH_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ComponentError(
            f"cannot connect to Ray at '{address}': {host}:{port} does not answer ({reason}); {FIX}"
        ) from None
