"""Registered LoRA adapters for ``hf_local``: ``adapters: {support: models:/support@production}``.

The generator asks an ``AdapterSource`` (the model registry; ``build`` hands one in) which
version the alias points at, downloads it, checks its manifest against the served base model
(the preflight) and loads it. An ``AdapterFollower`` thread asks again every
``adapter_refresh_s``; when the alias moved, it downloads and preflights the new version and has
the worker swap it in between generations. A version that fails the preflight (or fails to
load) is not retried; the old adapter keeps serving and ``status()`` says why.

This module imports nothing heavy; the model work is the worker's (``hf_worker``).
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llmops.confine import Escape, check_tree, inside
from llmops.errors import BackendError

log = logging.getLogger(__name__)
PREFIX = "models:/"
_REF = re.compile(r"^models:/(?P<name>[^/@\s]+)(?:@(?P<alias>[^/@\s]+)|/(?P<version>\d+|latest))$")


class AdapterSource(Protocol):
    """Where registered adapters come from (``llmops.models.adapters.RegistryAdapterSource``)."""

    def version_of(self, name: str, ref: str) -> int:
        """The version number that ``ref`` (alias, number, latest) of ``name`` points at."""
        ...

    def download(self, name: str, version: int, dst: Path) -> tuple[Path, Mapping[str, Any]]:
        """That version's adapter folder, downloaded under ``dst``, and its manifest."""
        ...

    def fingerprint(self, model_dir: Path) -> str:
        """The base model identity manifests record (``base_model_sha256``)."""
        ...


OpenSource = Callable[[str], AdapterSource]
"""Opens the adapter source of a tracking URI (what ``build`` passes to ``hf_local``)."""


def parse_ref(value: str) -> tuple[str, str] | None:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` as (name, ref); None for a folder."""
    if not value.startswith(PREFIX):
        return None
    found = _REF.match(value)
    if found is None:
        raise ValueError(
            f"'{value}' is not a registry reference; write models:/NAME@ALIAS (models:/"
            "support-lora@production) or models:/NAME/VERSION (models:/support-lora/3)"
        )
    return found["name"], found["alias"] or found["version"]


def preflight(
    manifest: Mapping[str, Any], model: str, fingerprint: str | None, max_rank: int
) -> str | None:
    """Why an adapter with ``manifest`` must not be served on base ``model`` (None: it may).

    ``fingerprint`` is the served folder's base_model_sha256 (None when the model came from
    the Hugging Face cache by name: then the names are compared)."""
    wanted = str(manifest.get("base_model_sha256") or "")
    named = str(manifest.get("base_model") or "?")
    if fingerprint is not None and wanted:
        if wanted != fingerprint:
            return (
                f"trained on base model '{named}' (sha256 {wanted[:12]}…), but this server "
                f"serves '{Path(model).name}' (sha256 {fingerprint[:12]}…)"
            )
    elif named not in (model, Path(model).name):
        return f"trained on base model '{named}', but this server serves '{model}'"
    rank = int(manifest.get("rank") or 0)
    if rank > max_rank:
        return f"rank {rank} is above this server's max_adapter_rank={max_rank}"
    return None


@dataclass
class Followed:
    """One ``models:/`` adapter: what it follows, which version serves, what went wrong."""

    name: str  # the adapter's name in the generator config
    model: str  # the registered model
    ref: str  # the alias (or version) followed
    version: int | None = None  # the version serving now
    folder: Path | None = None
    home: Path | None = None  # the download folder holding ``folder``
    swaps: int = 0
    swap_modes: list[str] = field(default_factory=list)  # "hotswap" | "reload" per swap
    rejected: dict[int, str] = field(default_factory=dict)  # version -> why it was not loaded
    error: str | None = None  # the last poll's failure (registry unreachable ...)

    def status(self) -> dict[str, Any]:
        return {
            "ref": f"{PREFIX}{self.model}@{self.ref}",
            "version": self.version,
            "swaps": self.swaps,
            "last_swap": self.swap_modes[-1] if self.swap_modes else None,
            "rejected": dict(self.rejected),
            "error": self.error,
        }


Swap = Callable[[str, str], "Future[str]"]
"""Asks the worker to swap adapter ``name`` to the folder; the future gives the mode used."""


class AdapterFollower:
    """Resolves, downloads, preflights and follows the registered adapters of one generator."""

    def __init__(
        self,
        generator: str,
        source: AdapterSource,
        refs: Mapping[str, tuple[str, str]],
        check: Callable[[Mapping[str, Any]], str | None],
    ) -> None:
        self.generator = generator
        self.source = source
        self.check = check
        self.followed = {n: Followed(n, model, ref) for n, (model, ref) in refs.items()}
        self._dir = Path(tempfile.mkdtemp(prefix="llmops-adapters-"))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one poll at a time (the thread's or a caller's)

    def initial(self) -> dict[str, str]:
        """Each followed adapter's current version, downloaded and checked: {name: folder}.
        A failed preflight here is an error: there is no older adapter to keep serving."""
        folders = {}
        for adapter in self.followed.values():
            version = self._version(adapter)
            home, folder, reason = self._fetch(adapter, version)
            if reason is not None:
                raise BackendError(self.generator, self._refusal(adapter, version, reason))
            adapter.version, adapter.folder, adapter.home = version, folder, home
            folders[adapter.name] = str(folder)
        return folders

    def follow(self, every_s: float, swap: Swap) -> None:
        """Poll every ``every_s`` seconds on a daemon thread until ``close``."""

        def loop() -> None:
            while not self._stop.wait(every_s):
                self.poll(swap)

        self._thread = threading.Thread(target=loop, name="llmops-adapters", daemon=True)
        self._thread.start()

    def poll(self, swap: Swap) -> list[str]:
        """Swap in every adapter whose alias moved (and passes the preflight); returns the
        names swapped. Never raises: failures are logged and kept in ``status()``."""
        swapped = []
        with self._lock:
            for adapter in self.followed.values():
                try:
                    if self._refresh(adapter, swap):
                        swapped.append(adapter.name)
                    adapter.error = None
                except Exception as exc:  # a poller must outlive a bad poll (registry down)
                    adapter.error = str(exc) or type(exc).__name__
                    log.warning("%s: adapter '%s': %s", self.generator, adapter.name, exc)
        return swapped

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: adapter.status() for name, adapter in self.followed.items()}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _refresh(self, adapter: Followed, swap: Swap) -> bool:
        version = self._version(adapter)
        if version == adapter.version or version in adapter.rejected or self._stop.is_set():
            return False
        home, folder, reason = self._fetch(adapter, version)
        if reason is None:
            try:  # the worker's own errors (shapes that fit no layer) are also a refusal
                mode = swap(adapter.name, str(folder)).result()
            except BackendError as exc:
                reason = str(exc)
        if reason is not None:
            adapter.rejected[version] = reason
            log.warning("%s", self._refusal(adapter, version, reason))
            shutil.rmtree(home, ignore_errors=True)
            return False
        old = adapter.home
        adapter.version, adapter.folder, adapter.home = version, folder, home
        adapter.swaps += 1
        adapter.swap_modes.append(mode)
        if old is not None:  # its weights are in memory no longer
            shutil.rmtree(old, ignore_errors=True)
        log.info("%s: adapter '%s' now serves version %s (%s)", self.generator, adapter.name,
                 version, mode)  # fmt: skip
        return True

    def _version(self, adapter: Followed) -> int:
        return self.source.version_of(adapter.model, adapter.ref)

    def _fetch(self, adapter: Followed, version: int) -> tuple[Path, Path, str | None]:
        """Download a version into a folder of its own; returns that folder, the adapter's
        folder in it and the preflight's verdict."""
        home = Path(tempfile.mkdtemp(prefix=f"{adapter.name}-v{version}-", dir=self._dir))
        folder, manifest = self.source.download(adapter.model, version, home)
        return home, folder, _outside(home, Path(folder)) or self.check(manifest)

    def _refusal(self, adapter: Followed, version: int, reason: str) -> str:
        return (
            f"adapter '{adapter.name}' ({PREFIX}{adapter.model}@{adapter.ref}) version {version} "
            f"not loaded: {reason}; still serving version {adapter.version or 'none'}"
        )


def _outside(home: Path, folder: Path) -> str | None:
    """Why a downloaded adapter ``folder`` is refused: it lies, or links, outside ``home``
    (whatever the source does, the served files come from the download folder only)."""
    try:
        if not inside(home, folder):
            raise Escape(str(folder), f"lies outside the download folder {home}")
        check_tree(folder)
    except Escape as exc:
        return f"download refused: {exc}"
    return None
