"""YAML positions, ${ENV} interpolation, secrets and masking, and located error reports."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmops.config import (
    SourceMap,
    issue_at,
    issues_from_validation,
    load_app_config,
    mask_secrets,
    read_yaml,
    resolve_path,
)
from llmops.config.interpolate import Interpolator
from llmops.errors import ConfigError, ConfigIssue


def _write(tmp_path: Path, text: str, name: str = "app.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _issues(path: Path) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load_app_config(path)
    return caught.value.issues


def _only_issue(path: Path) -> ConfigIssue:
    issues = _issues(path)
    assert len(issues) == 1, [i.format() for i in issues]
    return issues[0]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A folder with an existing ``docs/`` source folder."""
    (tmp_path / "docs").mkdir()
    return tmp_path


VALID = "name: ok-name\nsources:\n  - path: docs\n"

# --- YAML and positions ------------------------------------------------------------------


def test_positions_of_keys_and_list_items(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\nsources:\n  - path: docs\n    include: ['*.md']\n")
    data, smap = read_yaml(path)
    assert data == {"name": "x", "sources": [{"path": "docs", "include": ["*.md"]}]}
    assert smap.locate(("sources",)) == (2, 1)
    assert smap.locate(("sources", 0)) == (3, 5)
    assert smap.locate(("sources", 0, "include")) == (4, 5)
    assert smap.locate(("sources", 0, "include", 0)) == (4, 15)
    assert smap.locate(("sources", 0, "nothing", "deeper")) == (3, 5)
    assert smap.locate(()) == (1, 1)
    assert smap.locate(("absent",)) == (1, 1)


def test_positions_in_nested_and_flow_mappings(tmp_path: Path) -> None:
    path = _write(tmp_path, "retrieval:\n  top_k: 3\n  mmr: {enabled: true, fetch_k: 5}\n")
    _, smap = read_yaml(path)
    assert smap.locate(("retrieval", "top_k")) == (2, 3)
    assert smap.locate(("retrieval", "mmr")) == (3, 3)
    assert smap.locate(("retrieval", "mmr", "fetch_k")) == (3, 24)


def test_scalars_resolve_like_safe_load(tmp_path: Path) -> None:
    path = _write(tmp_path, "a: yes\nb: 1.5\nc: null\nd: '7'\ne: &x 3\nf: *x\ng: 0x10\n")
    data, _ = read_yaml(path)
    assert data == {"a": True, "b": 1.5, "c": None, "d": "7", "e": 3, "f": 3, "g": 16}


def test_merge_keys_explicit_keys_win(tmp_path: Path) -> None:
    text = "base: &b {x: 1, y: 2}\nother: &o {y: 8, z: 9}\nm:\n  <<: [*b, *o]\n  x: 3\n"
    data, smap = read_yaml(_write(tmp_path, text))
    assert data["m"] == {"x": 3, "y": 2, "z": 9}
    assert smap.locate(("m", "x")) == (5, 3)
    assert smap.locate(("m", "z")) == (2, 18)  # where the merged value is written


def test_missing_file_names_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        read_yaml(tmp_path / "nope.yaml")
    (issue,) = caught.value.issues
    assert issue.message == "config file not found"
    assert str(tmp_path / "nope.yaml") in issue.hint


def test_syntax_error_is_located(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\nretrieval:\n  top_k: 3\n   score_threshold: 0.2\n")
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    (issue,) = caught.value.issues
    assert (issue.line, issue.col) == (4, 19)
    assert issue.message == "YAML syntax error: mapping values are not allowed here"


@pytest.mark.parametrize(
    ("text", "found"), [("", "an empty file"), ("# only\n", "an empty file"), ("- a\n", "not")]
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, found: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_yaml(_write(tmp_path, text))
    assert found in caught.value.issues[0].message


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        read_yaml(_write(tmp_path, "a: 1\nb:\n  c: 1\n  c: 2\n"))
    (issue,) = caught.value.issues
    assert (issue.line, issue.col, issue.path) == (4, 3, "b.c")
    assert issue.message == "duplicate key 'c' (first defined on line 3)"


def test_bad_values_tags_and_recursion_are_issues_not_crashes(tmp_path: Path) -> None:
    text = "a: 2024-13-45\nb: !custom x\nc: &r [*r]\n? [k]\n: 1\n"
    with pytest.raises(ConfigError) as caught:
        read_yaml(_write(tmp_path, text))
    found = [(i.line, i.path, i.message.split(":")[0]) for i in caught.value.issues]
    assert found == [
        (1, "a", "cannot read this value"),
        (2, "b", "cannot read this value"),
        (3, "c.0", "an alias refers to a node that contains it"),
        (4, "", "a key must be a plain name or number"),
    ]


def _alias_bomb(levels: int) -> str:
    """A "billion laughs": each level a list of 9 aliases of the level before."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(1, levels):
        lines.append(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_once_and_located(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\n" + _alias_bomb(9))
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    assert time.perf_counter() - started < 1.0
    (issue,) = caught.value.issues
    assert (issue.line, issue.col, issue.path) == (7, 5, "l5")  # the first level past the limit
    assert issue.message.startswith("this value has 597,871 YAML nodes")


def test_aliases_below_the_node_limit_still_load(tmp_path: Path) -> None:
    data, _ = read_yaml(_write(tmp_path, _alias_bomb(5)))  # 66,430 nodes in its last level
    assert len(data["l4"]) == 9 and data["l4"][8][8][8][8] == ["lol"] * 9


# --- interpolation and secrets -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${HOME_DIR}/data", "/srv/data"),
        ("${HOME_DIR}", "/srv"),
        ("${MISSING:-fallback}", "fallback"),
        ("${MISSING:-}", ""),
        ("${HOME_DIR:-unused}", "/srv"),
        ("$${HOME_DIR}", "${HOME_DIR}"),
        ("a $$ b", "a $$ b"),
        ({"env": "HOME_DIR"}, "/srv"),
        ({"env": "HOME_DIR", "other": 1}, {"env": "HOME_DIR", "other": 1}),
        (["${HOME_DIR}", 3], ["/srv", 3]),
    ],
)
def test_interpolation(value: object, expected: object) -> None:
    interpolator = Interpolator({"HOME_DIR": "/srv"})
    assert interpolator.resolve(value) == expected
    assert interpolator.problems == []


def test_unset_variable_is_reported_at_its_location() -> None:
    interpolator = Interpolator({})
    assert interpolator.resolve({"a": {"b": "x${NOPE}"}}) == {"a": {"b": "x"}}
    ((loc, message, hint),) = interpolator.problems
    assert loc == ("a", "b")
    assert message == "environment variable NOPE is not set"
    assert hint == "export NOPE=... or write ${NOPE:-default}"


def test_malformed_reference_is_reported() -> None:
    interpolator = Interpolator({})
    interpolator.resolve({"a": "${BAD-NAME}", "b": "${UNCLOSED"})
    assert [(p[0], p[1]) for p in interpolator.problems] == [
        (("a",), "malformed environment reference '${BAD-NAME}'"),
        (("b",), "malformed environment reference '${UNCLOSED'"),
    ]


def test_environment_values_in_a_loaded_config(
    app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_PORT", "9001")
    monkeypatch.setenv("DOCS", "docs")
    monkeypatch.delenv("APP_HOST", raising=False)
    text = (
        "name: ok-name\nsources:\n  - path: {env: DOCS}\n"
        "server:\n  port: ${APP_PORT}\n  host: ${APP_HOST:-0.0.0.0}\n"
    )
    loaded = load_app_config(_write(app_dir, text))
    assert loaded.app.server.port == 9001 and loaded.app.server.host == "0.0.0.0"
    assert loaded.data["server"]["port"] == "9001"  # pydantic coerces, the data stays text
    assert loaded.app.sources[0].path == "docs"


def test_unset_variable_in_a_loaded_config_still_validates_the_rest(
    app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOPE_PORT", raising=False)
    path = _write(app_dir, VALID + "server:\n  port: ${NOPE_PORT}\nretrieval: {top_k: 0}\n")
    assert [(i.path, i.message) for i in _issues(path)] == [
        ("server.port", "environment variable NOPE_PORT is not set"),
        ("server.port", "expected an integer, got ''"),
        ("retrieval.top_k", "must be at least 1, got 0"),
    ]


def test_literal_secrets_are_rejected_env_secrets_accepted() -> None:
    interpolator = Interpolator({"KEY": "sk-from-env"})
    resolved = interpolator.resolve(
        {
            "x": {
                "api_key": "sk-literal",
                "auth_token": "${KEY}",
                "password": {"env": "KEY"},
                "db_secret": "",
                "tokens": "not-a-secret-key",
            }
        }
    )
    ((loc, message, hint),) = interpolator.problems
    assert loc == ("x", "api_key")
    assert message == "literal secret in config for 'api_key'"
    assert hint == "use ${API_KEY} and set it in the environment"
    assert resolved["x"]["auth_token"] == "sk-from-env"
    assert resolved["x"]["password"] == "sk-from-env"


def test_escaped_reference_is_still_a_literal_secret() -> None:
    interpolator = Interpolator({})
    interpolator.resolve({"Token": "$${NOT_A_REFERENCE}"})
    assert [p[0] for p in interpolator.problems] == [("Token",)]


def test_mask_secrets_by_key_name() -> None:
    data = {"a": {"api_key": "sk-1", "openai_api_key": "", "name": "n"}, "l": [{"token": "t"}]}
    assert mask_secrets(data) == {
        "a": {"api_key": "***", "openai_api_key": "", "name": "n"},
        "l": [{"token": "***"}],
    }


def test_values_from_secret_variables_are_tracked_and_masked() -> None:
    interpolator = Interpolator({"OPENAI_API_KEY": "sk-1", "HOST": "h"})
    data = interpolator.resolve(
        {"headers": {"Authorization": "Bearer ${OPENAI_API_KEY}"}, "host": "${HOST}"}
    )
    assert interpolator.secret_paths == {("headers", "Authorization")}
    assert mask_secrets(data, interpolator.secret_paths) == {
        "headers": {"Authorization": "***"},
        "host": "h",
    }


def test_loaded_config_records_secret_paths(app_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEN_API_KEY", "sk-1")
    path = _write(app_dir, VALID + "generator:\n  type: x\n  api_key: ${GEN_API_KEY}\n")
    loaded = load_app_config(path)
    assert ("generator", "api_key") in loaded.secret_paths
    assert mask_secrets(loaded.data)["generator"]["api_key"] == "***"


# --- validation reports -------------------------------------------------------------------


def test_valid_config_loads_with_defaults(app_dir: Path) -> None:
    loaded = load_app_config(_write(app_dir, VALID))
    assert loaded.app.retrieval.top_k == 4 and loaded.app.server.port == 8000
    assert loaded.base_dir == app_dir.resolve()
    assert loaded.file == str(app_dir / "app.yaml")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "name: ok-name\nsources:\n  - path: missing\nretrieval:\n  top_k: lots\nbogus: 1\n",
    )
    issues = _issues(path)
    assert [i.path for i in issues] == ["sources.0.path", "retrieval.top_k", "bogus"]
    assert [(i.line, i.col) for i in issues] == [(3, 5), (5, 3), (6, 1)]


def test_duplicate_keys_are_reported_with_the_other_problems(app_dir: Path) -> None:
    path = _write(app_dir, VALID + "server:\n  port: 1\n  port: 0\n")
    assert [(i.line, i.message) for i in _issues(path)] == [
        (6, "duplicate key 'port' (first defined on line 5)"),
        (6, "must be at least 1, got 0"),  # the last value counts, as in PyYAML
    ]


def test_missing_source_path(tmp_path: Path) -> None:
    issue = _only_issue(_write(tmp_path, "name: ok-name\nsources:\n  - path: nowhere\n"))
    assert (issue.line, issue.col, issue.path) == (3, 5, "sources.0.path")
    assert issue.message == f"source path does not exist: {(tmp_path / 'nowhere').resolve()}"
    assert issue.hint == f"paths are relative to the config file's folder ({tmp_path.resolve()})"


def test_mmr_fetch_k_below_top_k(app_dir: Path) -> None:
    text = VALID + "retrieval:\n  top_k: 10\n  mmr:\n    enabled: true\n    fetch_k: 5\n"
    issue = _only_issue(_write(app_dir, text))
    assert issue.path.startswith("retrieval")
    assert (issue.line, issue.col) == (8, 5)
    assert issue.message == "fetch_k (5) must be at least top_k (10)"


def test_mmr_check_runs_even_when_another_section_is_wrong(app_dir: Path) -> None:
    text = VALID + "server: {port: 0}\nretrieval: {top_k: 10, mmr: {enabled: true, fetch_k: 5}}\n"
    assert [i.path for i in _issues(_write(app_dir, text))] == [
        "server.port",
        "retrieval.mmr.fetch_k",
    ]


def test_unknown_key_did_you_mean_points_at_the_key(app_dir: Path) -> None:
    issue = _only_issue(_write(app_dir, VALID + "retrieval:\n  mmr:\n    lamda: 0.3\n"))
    assert (issue.line, issue.col, issue.path) == (6, 5, "retrieval.mmr.lamda")
    assert issue.message == "unknown key 'lamda'"
    assert issue.hint == "did you mean 'lambda'? allowed: enabled, fetch_k, lambda"


def test_unknown_key_in_a_list_item(app_dir: Path) -> None:
    issue = _only_issue(_write(app_dir, VALID + "    includes: ['*.md']\n"))
    assert (issue.line, issue.col, issue.path) == (4, 5, "sources.0.includes")
    assert issue.hint.startswith("did you mean 'include'? allowed: exclude, include, loaders")


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ("retrieval: {top_k: four}", "retrieval.top_k", "expected an integer, got 'four'"),
        ("retrieval: {top_k: 2.5}", "retrieval.top_k", "expected an integer, got 2.5"),
        ("retrieval: {mmr: {enabled: maybe}}", "retrieval.mmr.enabled", "expected true or false"),
        ("retrieval: 3", "retrieval", "expected a mapping, got 3"),
        ("server: {port: 70000}", "server.port", "must be at most 65535, got 70000"),
        ("name: 'my app!'", "name", "'my app!' is not a valid app name"),
    ],
)
def test_wrong_values(app_dir: Path, section: str, path: str, message: str) -> None:
    issue = _only_issue(_write(app_dir, section + "\nsources:\n  - path: docs\n"))
    assert issue.path == path
    assert issue.message.startswith(message)


def test_missing_and_empty_sources(tmp_path: Path) -> None:
    missing = _only_issue(_write(tmp_path, "name: ok-name\n", "a.yaml"))
    assert (missing.path, missing.message) == ("sources", "required key missing")
    empty = _only_issue(_write(tmp_path, "name: ok-name\nsources: []\n", "b.yaml"))
    assert (empty.line, empty.message) == (2, "needs at least 1 item")


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    mode: Literal["fast", "exact"] = "fast"
    max_len: int = Field(1, alias="maxLength")


class _Component(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = 10
    inner: _Inner | None = None
    parts: list[_Inner] = Field(default_factory=list)

    @field_validator("size")
    @classmethod
    def _even(cls, size: int) -> int:
        if size % 2:
            raise ValueError(f"size ({size}) must be even")
        return size


def _component_issues(text: str, tmp_path: Path) -> list[ConfigIssue]:
    data, smap = read_yaml(_write(tmp_path, text))
    settings = {k: v for k, v in data["chunker"].items() if k != "type"}
    with pytest.raises(ValidationError) as caught:
        _Component.model_validate(settings)
    return issues_from_validation(caught.value, smap, "f.yaml", ("chunker",), _Component)


def test_component_settings_are_located_under_their_section(tmp_path: Path) -> None:
    text = "chunker:\n  type: x\n  size: 3\n  inner: {mode: fsat, maxlength: 2}\n"
    issues = _component_issues(text, tmp_path)
    assert [(i.path, i.line, i.col) for i in issues] == [
        ("chunker.size", 3, 3),
        ("chunker.inner.mode", 4, 11),
        ("chunker.inner.maxlength", 4, 23),
    ]
    assert issues[0].message == "size (3) must be even"
    assert issues[1].message == "'fsat' is not an allowed value"
    assert issues[1].hint == "did you mean 'fast'? allowed: fast, exact"
    assert issues[2].hint == "did you mean 'maxLength'? allowed: maxLength, max_len, mode"


def test_unknown_key_inside_a_list_of_models(tmp_path: Path) -> None:
    text = "chunker:\n  type: x\n  parts:\n    - {mode: fast}\n    - {mod: exact}\n"
    (issue,) = _component_issues(text, tmp_path)
    assert (issue.path, issue.line, issue.col) == ("chunker.parts.1.mod", 5, 8)
    assert issue.hint.startswith("did you mean 'mode'?")


def test_issue_at_and_resolve_path(tmp_path: Path) -> None:
    smap = SourceMap({("chunker",): (4, 1), ("chunker", "type"): (5, 3)})
    issue = issue_at(smap, "f.yaml", ("chunker", "type"), "unknown chunker type 'x'", "h")
    assert issue.format() == "f.yaml:5:3  chunker.type  unknown chunker type 'x'\n    hint: h"
    assert resolve_path(tmp_path, "docs") == (tmp_path / "docs").resolve()
    assert resolve_path(tmp_path, "~") == Path.home().resolve()
    assert resolve_path(tmp_path, "/abs") == Path("/abs")
