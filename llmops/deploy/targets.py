"""The render targets, by the name ``--target`` takes."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from llmops.deploy import compose, kustomize
from llmops.deploy.app import DeployedApp
from llmops.deploy.files import Files
from llmops.deploy.spec import DeploySpec


class Target(Protocol):
    def __call__(self, deployed: DeployedApp, spec: DeploySpec, root: Path, out: Path) -> Files:
        """The files for ``deployed``, to be written under ``out``; ``root`` is the project
        folder (the image's build context)."""
        ...


def compose_target(deployed: DeployedApp, spec: DeploySpec, root: Path, out: Path) -> Files:
    if spec.most > 1 or spec.mesh is not None:
        raise ValueError(
            "compose runs one app container: on one machine scale with server.workers "
            "(`llmops up --workers N`); for replicas or a mesh render --target k8s"
        )
    return compose.render(deployed, spec, root, out)


TARGETS: dict[str, Target] = {"compose": compose_target, "k8s": kustomize.render}
