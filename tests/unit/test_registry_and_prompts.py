"""Registry look-ups and plugins; prompt templates render in a sandbox."""

from __future__ import annotations

import sys
import types
from importlib import metadata
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError
from pydantic import BaseModel

from llmops import registry
from llmops.build import load_components
from llmops.errors import ComponentError, UnknownComponent
from llmops.prompts import BUNDLED as PROMPTS
from llmops.prompts import PromptLibrary, find_prompt_dirs, split_messages
from llmops.types import Chunk, ScoredChunk


def test_unknown_component_suggests_the_closest_name() -> None:
    load_components()
    with pytest.raises(UnknownComponent) as caught:
        registry.get("chunker", "markdwn")
    assert caught.value.suggestion == "markdown"
    assert "allowed: markdown, recursive, token" in str(caught.value)


def test_plugins_register_through_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("llmops_test_plugin")

    def register_all() -> None:
        @registry.register("store", "test_plugin_store", summary="from a plugin", extra="x")
        class PluginStore:
            class Config(BaseModel):
                size: int = 1

    module.register_all = register_all  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llmops_test_plugin", module)
    point = metadata.EntryPoint("demo", "llmops_test_plugin:register_all", registry.PLUGIN_GROUP)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [point])
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    assert registry.load_plugins() == ["demo"]
    entry = registry.get("store", "test_plugin_store")
    assert entry.summary == "from a plugin" and entry.extra == "x" and entry.installed


def test_a_factory_gets_what_it_names_of_the_context(tmp_path: Path) -> None:
    class Settings(BaseModel):
        size: int = 1

    class Store:
        def __init__(self, config: Settings, *, data_dir: Path, namespace: str) -> None:
            self.config, self.data_dir, self.namespace = config, data_dir, namespace

    class Anything:
        def __init__(self, config: Settings, **context: object) -> None:
            self.context = context

    context = registry.FactoryContext(tmp_path, data_dir=tmp_path / "data", namespace="app")
    entry = registry.Entry("store", "t", Store, Settings, "", None, ())
    store = entry.make(Settings(size=3), context)
    assert (store.config.size, store.data_dir, store.namespace) == (3, tmp_path / "data", "app")
    anything = registry.Entry("store", "t", Anything, Settings, "", None, ()).make(
        Settings(), context
    )
    assert set(anything.context) == {
        "base_dir", "data_dir", "namespace", "token_counter", "adapter_source"
    }  # fmt: skip


def test_answer_prompt_renders_numbered_context() -> None:
    hit = ScoredChunk(Chunk("c", "d", "Body text.", "guide/a.md", 0, {"heading": "Intro"}), 0.9)
    messages = PromptLibrary([PROMPTS]).render("answer.v1", "What is it?", [hit])
    assert [m.role for m in messages] == ["system", "user"]
    assert "[1] (source: guide/a.md, section: Intro)" in messages[1].content
    assert messages[1].content.endswith("Question: What is it?")


def test_templates_are_sandboxed(tmp_path: Path) -> None:
    (tmp_path / "evil.v1.j2").write_text("{{ question.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SecurityError):
        PromptLibrary([tmp_path]).render("evil.v1", "q", [])


def test_user_templates_come_before_bundled_ones(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "answer.v1.j2").write_text("Mine: {{ question }}")
    library = PromptLibrary(find_prompt_dirs(tmp_path, None))
    assert [m.content for m in library.render("answer.v1", "q?", [])] == ["Mine: q?"]
    assert find_prompt_dirs(tmp_path / "nothing-here" / "a" / "b" / "c", None) == [PROMPTS]


def test_missing_prompt_lists_what_exists() -> None:
    with pytest.raises(ComponentError, match=r"available: answer\.v1"):
        PromptLibrary([PROMPTS]).check("answer.v9")


def test_plain_template_is_one_user_message() -> None:
    assert [(m.role, m.content) for m in split_messages("Hello\n")] == [("user", "Hello")]
