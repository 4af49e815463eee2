"""The two base shapes of config sections: strict models, and component sections (a registry
key plus that component's own settings)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(BaseModel):
    """``type`` names a registered component; every other key is that component's setting."""

    model_config = ConfigDict(extra="allow")
    type: str

    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


_APP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,62}")


def _app_name(name: str) -> str:
    if not _APP_NAME.fullmatch(name):
        raise ValueError(
            f"'{name}' is not a valid app name: use 3-63 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


AppName = Annotated[str, AfterValidator(_app_name)]
"""The name of an app, a model app or a job: it prefixes collections, studies and registered
models, so 3-63 letters, digits, '_' or '-'."""
