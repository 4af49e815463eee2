"""The only place that turns config into components, in two separate steps:
``load_config`` (``checks``) validates a YAML file completely and reports every problem at once;
``build`` (``components``) makes the components from the result without any I/O."""

from llmops.build.checks import check_component, config_json_schema, load_config
from llmops.build.components import (
    Components,
    IngestParts,
    build,
    build_ingest_parts,
    make_generator,
)
from llmops.build.spec import AppSpec, Resolved, load_components

__all__ = [
    "AppSpec",
    "Components",
    "IngestParts",
    "Resolved",
    "build",
    "build_ingest_parts",
    "check_component",
    "config_json_schema",
    "load_components",
    "load_config",
    "make_generator",
]
