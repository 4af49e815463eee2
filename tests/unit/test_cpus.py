"""The cores a process may use: its affinity and its cgroup CPU quota, read from a cgroup tree
written in a temp folder as a container runtime lays it out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmops import cpus


def cgroup_tree(tmp_path: Path, own: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    (tmp_path / "self").write_text(own)
    return root, tmp_path / "self"


def test_a_v2_quota_is_read_from_the_process_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    root, own = cgroup_tree(tmp_path, "0::/kubepods/pod1/app\n", {
        "cpu.max": "max 100000\n",
        "kubepods/pod1/cpu.max": "250000 100000\n",  # the pod's limit: 2.5 cores
        "kubepods/pod1/app/cpu.max": "max 100000\n",
    })  # fmt: skip
    assert cpus.cpu_quota(root, own) == 2.5


def test_no_limit_means_no_quota(tmp_path: Path) -> None:
    root, own = cgroup_tree(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    assert cpus.cpu_quota(root, own) is None
    assert cpus.cpu_quota(tmp_path / "nowhere", tmp_path / "missing") is None


def test_a_v1_quota_is_read_from_the_cpu_controller(tmp_path: Path) -> None:
    root, own = cgroup_tree(tmp_path, "4:memory:/docker/c1\n3:cpu,cpuacct:/docker/c1\n", {
        "cpu,cpuacct/docker/c1/cpu.cfs_quota_us": "150000\n",
        "cpu,cpuacct/docker/c1/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",  # the host's: unlimited
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })  # fmt: skip
    assert cpus.cpu_quota(root, own) == 1.5


def test_usable_cores_is_capped_by_the_quota_and_the_affinity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(cpus, "_physical", lambda logical: 32)  # two hyper-threads per core
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(cpus, "cpu_quota", lambda: None)
    assert cpus.usable_cores() == 32
    monkeypatch.setattr(cpus, "cpu_quota", lambda: 2.5)  # docker run --cpus 2.5
    assert cpus.usable_cores() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert cpus.usable_cores() == 2  # four hyper-threads: two cores
    monkeypatch.setattr(cpus, "cpu_quota", lambda: 0.2)
    assert cpus.usable_cores() == 1


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and two CPUs to pin the process to one",
)
def test_a_process_pinned_to_one_cpu_gets_one_core() -> None:
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})  # taskset -c / docker --cpuset-cpus
        assert cpus.usable_cores() == 1
    finally:
        os.sched_setaffinity(0, allowed)
