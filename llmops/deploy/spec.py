"""The choices of a rendering that are not in the app config: image, replicas, mesh."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mesh = Literal["istio", "gateway-api"]


@dataclass(frozen=True)
class DeploySpec:
    image: str = "llmops:latest"
    replicas: int = 1  # production's replicas (the HPA's minimum)
    max_replicas: int | None = None  # the HPA's maximum; default: replicas
    mesh: Mesh | None = None
    gateway: str = "llmops-gateway"  # gateway-api: the Gateway the HTTPRoute attaches to
    cpu: str = "500m"  # requests of one app pod
    memory: str = "1Gi"
    memory_limit: str = "3Gi"

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.most < self.replicas:
            raise ValueError("replicas must be >= 1 and max-replicas >= replicas")

    @property
    def most(self) -> int:
        """The most pods of one workload at once."""
        return self.replicas if self.max_replicas is None else self.max_replicas
