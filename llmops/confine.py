"""Keeping paths inside a root folder: the one check that loaders (a source folder) and the
model registry (a download folder, an artifact store) share. A path leaves its root by being
absolute, by a ``..`` step, or by a symbolic link whose target lies outside; each is refused
with an ``Escape`` naming the path and why, and the caller says what it was doing."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

OUTSIDE = "symbolic link to a path outside the source folder: refused"
"""The reason a source folder's link out of it is skipped (reported per file)."""


class Escape(ValueError):
    """A path that would lead out of its root folder."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"'{path}': {reason}")


def real(path: Path | str) -> Path:
    """The path with every link followed (``os.path.realpath``: a link loop does not raise)."""
    return Path(os.path.realpath(path))


def inside(root: Path, path: Path) -> bool:
    """True when ``path``, links followed, is ``root`` or lies under it (links followed)."""
    return real(path).is_relative_to(real(root))


def relative_part(relative: str) -> PurePosixPath:
    """``relative`` as a posix path that stays below the folder it is joined to; Escape for an
    absolute path (``/x``, ``C:\\x``), a ``..`` step or a NUL byte."""
    if "\x00" in relative:
        raise Escape(relative, "a NUL byte in a path")
    posix = PurePosixPath(relative.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(relative).drive:
        raise Escape(relative, "an absolute path where a relative one is expected")
    if ".." in posix.parts:
        raise Escape(relative, "a '..' step leads out of the folder")
    return posix


def join_inside(root: Path, relative: str) -> Path:
    """``root / relative``, refused (Escape) when ``relative`` is absolute, has a ``..`` step,
    or reaches (through links) a path outside ``root``."""
    path = root / relative_part(relative)
    if not inside(root, path):
        raise Escape(relative, f"leads through a symbolic link out of {root}")
    return path


def escaping_links(root: Path) -> list[str]:
    """The posix paths (relative to ``root``) of the links under ``root`` whose targets lie
    outside it, links not followed while walking, sorted. A ``root`` that is itself a link
    to elsewhere is judged by where it leads: a file root has nothing under it."""
    top = real(root)
    found = []
    for folder, dirs, names in os.walk(root):
        for name in [*dirs, *names]:
            path = Path(folder) / name
            if path.is_symlink() and not real(path).is_relative_to(top):
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


def check_tree(root: Path) -> None:
    """Escape when a link under ``root`` leads out of it (the first few are named)."""
    links = escaping_links(root)
    if links:
        shown = ", ".join(links[:5]) + (f" and {len(links) - 5} more" if len(links) > 5 else "")
        raise Escape(str(root), f"symbolic links lead out of the folder: {shown}")
