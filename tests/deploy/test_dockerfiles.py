"""The Dockerfiles, read statically (no image can be built here: no container daemon, and no
registry to pull base images from): stages, a non-root user, the port, the health check on
/ready, COPY sources that exist, and the same torch pin as the Makefile."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from llmops.config.schema import ServerConfig

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
    run = " ".join(args for word, args in instructions(ROOT / "Dockerfile") if word == "RUN")
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
