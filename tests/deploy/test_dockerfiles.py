"""The Dockerfiles, read statically (building needs a container runtime and a base image:
bench/container_smoke.py builds and runs the CPU one): stages, a non-root user, the port, the
health check on /ready, COPY sources that exist, the same torch pin as the Makefile, build args
that leave machine paths out, and the config the image serves by default."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmops.config.schema import ServerConfig
from llmops.deploy.app import CONFIG_FILE, DATA_DIR

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ["Dockerfile", "Dockerfile.gpu"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: continuation lines joined, comments dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", path.read_text())
    lines = [line.strip() for line in joined.splitlines()]
    parsed = []
    for line in lines:
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            parsed.append((word.upper(), rest.strip()))
    return parsed


def arg_defaults(path: Path) -> dict[str, str | None]:
    """Each ARG's default (None: none, the value comes from --build-arg or stays unset)."""
    found: dict[str, str | None] = {}
    for word, args in instructions(path):
        if word == "ARG":
            name, equals, default = args.partition("=")
            found[name] = default if equals else None
    return found


def expanded(path: Path, text: str) -> str:
    """``text`` with each ``${NAME}`` replaced by the ARG's default."""
    defaults = arg_defaults(path)
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)] or "", text)


def stages(path: Path) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions(path):
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def test_parser_reads_continuations(tmp_path: Path) -> None:
    file = tmp_path / "Dockerfile"
    file.write_text("FROM a AS b\n# c\nRUN x \\\n    && y\nUSER 1\n")
    assert instructions(file) == [("FROM", "a AS b"), ("RUN", "x && y"), ("USER", "1")]


def test_arg_defaults_expand(tmp_path: Path) -> None:
    file = tmp_path / "Dockerfile"
    file.write_text("ARG A=x:1\nFROM ${A} AS b\nARG B\n")
    assert arg_defaults(file) == {"A": "x:1", "B": None}
    assert expanded(file, "FROM ${A} ${B}.") == "FROM x:1 ."


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_image_is_a_build_arg_defaulting_to_a_public_image(name: str) -> None:
    """Another base (a mirror's, or one made without a registry) is a --build-arg away."""
    base = {"Dockerfile": "python:3.11-slim", "Dockerfile.gpu": "nvidia/cuda:"}[name]
    path = ROOT / name
    froms = [args.split()[0] for args in (s[0][1] for s in stages(path))]
    assert len(set(froms)) == 1 and froms[0].startswith("${")
    assert expanded(path, froms[0]).startswith(base)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_pip_build_args_bake_no_machine_paths(name: str) -> None:
    path = ROOT / name
    pip_args = {k: v for k, v in arg_defaults(path).items() if k.startswith("PIP_")}
    assert set(pip_args) == {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT"}
    assert all(default is None for default in pip_args.values())
    # declared in the builder only: nothing of a build's pip set-up reaches the image
    builder, final = stages(path)
    assert {args for word, args in builder if word == "ARG"} >= set(pip_args)
    assert not [args for word, args in final if word == "ARG"]
    assert "file://" not in path.read_text() and "/opt/wheels" not in path.read_text()


@pytest.mark.parametrize("name", DOCKERFILES)
def test_default_config_is_the_quickstart_as_the_container_sees_it(name: str) -> None:
    """The image's /app/app.yaml: rendered as `llmops deploy render` moves paths (the
    quickstart's own relative paths point outside /app), run here from the project root."""
    final = stages(ROOT / name)[-1]
    config_name = Path(CONFIG_FILE).name
    copied = [shlex.split(args)[-1] for word, args in final if word == "COPY"]
    assert not [dest for dest in copied if dest.endswith(config_name)]
    (command,) = [
        shlex.split(args)
        for word, args in final
        if word == "RUN" and args.endswith(f"> {config_name}")
    ]
    assert command[:2] == ["python", "-c"] and command[3:] == [">", config_name]
    done = subprocess.run(
        [sys.executable, "-c", command[2]], cwd=ROOT, capture_output=True, text=True, check=True
    )
    config = yaml.safe_load(done.stdout)
    assert config["data_dir"] == DATA_DIR
    assert config["sources"] and all((ROOT / s["path"]).is_dir() for s in config["sources"])
    assert f"mkdir -p {DATA_DIR}" in " ".join(args for word, args in final if word == "RUN")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_multi_stage_non_root_final(name: str) -> None:
    builder, final = stages(ROOT / name)
    assert builder[0][1].endswith("AS builder") and final[0][1].endswith("AS runtime")
    final_words = dict(final)
    assert "COPY" in final_words
    assert any(args.startswith("--from=builder") for word, args in final if word == "COPY")
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    # no compilers in the image that runs
    assert not any("build-essential" in args for word, args in final if word == "RUN")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_port_health_entrypoint_env(name: str) -> None:
    final = stages(ROOT / name)[-1]
    port = ServerConfig.model_fields["port"].default
    assert [args for word, args in final if word == "EXPOSE"] == [str(port)]
    (health,) = [args for word, args in final if word == "HEALTHCHECK"]
    assert f"127.0.0.1:{port}/ready" in health
    (entry,) = [args for word, args in final if word == "ENTRYPOINT"]
    assert json.loads(entry) == ["llmops", "up", "/app/app.yaml", "--host", "0.0.0.0"]
    env = " ".join(args for word, args in final if word == "ENV")
    for variable in ("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", "DO_NOT_TRACK=1"):
        assert variable in env


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copy_sources_exist(name: str) -> None:
    copies = [shlex.split(args) for word, args in instructions(ROOT / name) if word == "COPY"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    checked = 0
    for words in copies:
        if any(w.startswith("--from=") for w in words):
            continue
        for source in [w for w in words if not w.startswith("--")][:-1]:
            assert (ROOT / source).exists(), f"{name}: COPY {source}: not in the repository"
            assert source not in ignored, f"{name}: COPY {source} is in .dockerignore"
            checked += 1
    assert checked >= 4


def test_torch_pin_matches_makefile_and_constraints() -> None:
    makefile = re.findall(r"pip install --quiet (torch==[\w.+]+)", (ROOT / "Makefile").read_text())
    path = ROOT / "Dockerfile"
    run = expanded(path, " ".join(args for word, args in instructions(path) if word == "RUN"))
    pinned = re.findall(r"pip install (torch==[\w.+]+) --index-url (\S+)", run)
    assert makefile and pinned == [(makefile[0], "https://download.pytorch.org/whl/cpu")]
    assert makefile[0] in (ROOT / "constraints.txt").read_text().split()
    # the package itself under the same constraints, with the bundled embedder's extra
    assert re.search(r'pip install -c \S*constraints.txt "\./src\[all\]"', run)


def test_gpu_image_installs_vllm_extra_without_the_cpu_pin() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^vllm = \[", pyproject, re.M)
    run = " ".join(args for word, args in instructions(ROOT / "Dockerfile.gpu") if word == "RUN")
    assert "[all,vllm]" in run and "grep -v '^torch=='" in run
    assert "torch==" not in run.replace("'^torch=='", "")
