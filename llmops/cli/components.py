"""llmops components"""

from __future__ import annotations

from rich.table import Column, Table

from llmops import registry
from llmops.build import load_components
from llmops.cli.common import console


def components() -> None:
    """List every component a config can name with `type:` — built in or from plugins.

    Shows kind, name, what it does, the pip extra it needs and whether that is installed.
    """
    load_components()
    # names are typed into configs: never broken across lines
    table = Table("kind", Column("name", no_wrap=True), "summary", "extra", "installed")
    for entry in registry.entries():
        mark = "[green]yes[/green]" if entry.installed else "[red]no[/red]"
        table.add_row(entry.kind, entry.name, entry.summary, entry.extra or "-", mark)
    console.print(table)
