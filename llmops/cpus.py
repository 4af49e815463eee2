"""How many cores this process may really use. A container on a large host sees the host's CPUs
in ``os.cpu_count()``; what it may run on is its CPU affinity (Docker's ``--cpuset-cpus``) and
its CPU quota (``--cpus``, Kubernetes' CPU limit: cgroup v2 ``cpu.max``, v1
``cpu.cfs_quota_us``). Threads past that only queue for the same time slices."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
OWN_CGROUP = Path("/proc/self/cgroup")


def usable_cores() -> int:
    """Physical cores this process may run on at once: its affinity, counted in physical cores
    where hyper-threads pair them (two threads on one core only compete), capped by its quota
    rounded down (a thread past the quota gets the process throttled: latency spikes)."""
    logical = os.cpu_count() or 1
    allowed = _affinity(logical)
    cores = max(1, round(allowed * _physical(logical) / logical))
    quota = cpu_quota()
    return cores if quota is None else max(1, min(cores, math.floor(quota)))


def cpu_quota(root: Path = CGROUP_ROOT, own: Path = OWN_CGROUP) -> float | None:
    """The tightest CPU quota, in cores, on this process's cgroup and its ancestors (v2
    ``cpu.max``, else v1 ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``); None when unlimited
    or not on Linux."""
    quotas = [q for folder in _cgroup_folders(root, own) if (q := _quota_in(folder)) is not None]
    return min(quotas, default=None)


def _affinity(logical: int) -> int:
    try:
        return len(os.sched_getaffinity(0)) or logical
    except (AttributeError, OSError):  # not on Linux
        return logical


def _physical(logical: int) -> int:
    try:
        import psutil
    except ImportError:
        return logical
    return int(psutil.cpu_count(logical=False) or logical)


def _cgroup_folders(root: Path, own: Path) -> list[Path]:
    """The folders that may hold this process's CPU limits: its cgroup's (v2 ``0::/path``, v1
    ``N:cpu,cpuacct:/path``) and every ancestor's up to the hierarchy's root."""
    try:
        lines = own.read_text().splitlines()
    except OSError:
        return []
    folders = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base = root
        elif "cpu" in controllers.split(","):
            base = root / controllers
            if not base.is_dir():
                base = root / "cpu"
        else:
            continue
        relative = Path(path.lstrip("/"))
        folders += [base / parent for parent in [relative, *relative.parents]]
    return folders


def _quota_in(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()
        if quota == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((folder / "cpu.cfs_quota_us").read_text())
        period_us = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None
