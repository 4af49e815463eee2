"""The two base shapes of config sections: strict models, and component sections (a registry
key plus that component's own settings)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(BaseModel):
    """``type`` names a registered component; every other key is that component's setting."""

    model_config = ConfigDict(extra="allow")
    type: str

    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
