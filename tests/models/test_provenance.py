"""Provenance tags of a registered version: the md5 a DVC file records for the data (a file's
own .dvc, or a tracked folder's), and the git commit of the checkout holding the config."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from llmops.models._mlflow import git_tags
from llmops.models.provenance import dvc_record, provenance_tags

FILE_MD5 = "22a1a2931c8370d3aeedd7183606fd7f"
DIR_MD5 = "b6923e1e4ad16ea1a7e2b328842d56a2.dir"


def _dvc(path: Path, outs: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"outs:\n{outs}")
    return path


def _data(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("a,b\n1,2\n")
    return path


def test_a_file_tracked_by_its_own_dvc_file(tmp_path: Path) -> None:
    data = _data(tmp_path / "data" / "train.csv")
    dvc = _dvc(tmp_path / "data" / "train.csv.dvc", f"- md5: {FILE_MD5}\n  path: train.csv\n")
    record = dvc_record(data)
    assert record is not None and (record.file, record.md5) == (dvc, FILE_MD5)


def test_a_file_in_a_tracked_folder_gets_the_folders_md5(tmp_path: Path) -> None:
    (tmp_path / ".dvc").mkdir()  # the DVC repository's root
    data = _data(tmp_path / "data" / "adult" / "adult.data")
    dvc = _dvc(tmp_path / "data" / "adult.dvc", f"- md5: {DIR_MD5}\n  nfiles: 2\n  path: adult\n")
    record = dvc_record(data)
    assert record is not None and (record.file, record.md5) == (dvc, DIR_MD5)


def test_the_output_named_after_the_file_is_chosen(tmp_path: Path) -> None:
    data = _data(tmp_path / "test.csv")
    outs = f"- md5: {'0' * 32}\n  path: other.csv\n- md5: {FILE_MD5}\n  path: test.csv\n"
    _dvc(tmp_path / "test.csv.dvc", outs)
    record = dvc_record(data)
    assert record is not None and record.md5 == FILE_MD5


def test_nothing_above_the_repository_root_is_looked_at(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    _dvc(tmp_path / "repo.dvc", f"- md5: {DIR_MD5}\n  path: repo\n")  # outside the checkout
    assert dvc_record(_data(repo / "data" / "train.csv")) is None


def test_an_untracked_file_or_a_broken_dvc_file_gives_no_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / ".git").mkdir()
    assert dvc_record(_data(tmp_path / "plain.csv")) is None
    broken = _data(tmp_path / "broken.csv")
    (tmp_path / "broken.csv.dvc").write_text("outs: [unclosed\n")
    no_md5 = _data(tmp_path / "no_md5.csv")
    _dvc(tmp_path / "no_md5.csv.dvc", "- path: no_md5.csv\n")
    with caplog.at_level(logging.WARNING, logger="llmops.models.provenance"):
        assert dvc_record(broken) is None and dvc_record(no_md5) is None
    assert "broken.csv.dvc" in caplog.text and "no output with an md5" in caplog.text


def test_tags_name_the_first_tracked_file_and_each_other_dvc_file_by_role(
    tmp_path: Path,
) -> None:
    (tmp_path / ".git").mkdir()  # not a real checkout: `git rev-parse` fails, no commit tag
    train = _data(tmp_path / "data" / "train.csv")
    test = _data(tmp_path / "data" / "test.csv")
    _dvc(tmp_path / "data" / "train.csv.dvc", f"- md5: {FILE_MD5}\n  path: train.csv\n")
    _dvc(tmp_path / "data" / "test.csv.dvc", f"- md5: {'1' * 32}\n  path: test.csv\n")
    config_folder = tmp_path / "configs"
    config_folder.mkdir()
    tags = provenance_tags(config_folder, {"train": train, "test": test})
    assert tags == {
        "dvc.md5": FILE_MD5,
        "dvc.file": "../data/train.csv.dvc",
        "dvc.test.md5": "1" * 32,
        "dvc.test.file": "../data/test.csv.dvc",
    }


def test_files_in_one_tracked_folder_are_tagged_once(tmp_path: Path) -> None:
    (tmp_path / ".dvc").mkdir()
    files = {role: _data(tmp_path / "adult" / f"adult.{role}") for role in ("train", "test")}
    _dvc(tmp_path / "adult.dvc", f"- md5: {DIR_MD5}\n  path: adult\n")
    tags = provenance_tags(tmp_path, files)
    assert {k: v for k, v in tags.items() if k.startswith("dvc.")} == {
        "dvc.md5": DIR_MD5,
        "dvc.file": "adult.dvc",
    }


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
def test_the_git_commit_is_the_config_folders_not_the_current_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "project"
    (repo / "configs").mkdir(parents=True)
    (repo / "configs" / "app.yaml").write_text("kind: model\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "config"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert git_tags() == {}  # the default stays the current directory
    assert git_tags(repo / "configs") == {"git.commit": head}
    assert provenance_tags(repo / "configs", {})["git.commit"] == head
