"""The exception tree every layer raises from.

LLMOpsError
├── ConfigError            one or more problems in a config file (all reported at once)
├── ComponentError
│   ├── UnknownComponent   a registry key that does not exist (with a did-you-mean)
│   └── MissingDependency  an optional library is not installed (names the pip extra)
├── LoadError              one file could not be read or parsed (it is skipped, never fatal)
├── IngestError            an ingestion could not run at all
├── DatasetError           an evaluation dataset is missing a file or has a malformed line
├── InvalidRequest         a query or request that cannot be served as asked (HTTP 4xx)
│   ├── InvalidRows        rows to predict that break the model's schema (HTTP 422, per row)
│   ├── UnknownModel       a model (or alias) this server does not serve (HTTP 404)
│   └── NotFound           a named record (an eval run) that does not exist (HTTP 404)
├── NotReady               the service is not started or its index is not open (HTTP 503)
│   └── StorageError       a database or index folder is full, locked or corrupt (names it)
├── BackendError           a model backend failed, refused or timed out after retries (HTTP 503)
└── RegistryError          the model registry is unreachable or refused an action (HTTP 503)
    └── UnknownVersion     it lacks the model, version or alias asked for (HTTP 404)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class LLMOpsError(Exception):
    """Base of every error llmops raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file, located as precisely as the YAML allows."""

    file: str
    line: int
    col: int
    path: str
    message: str
    hint: str = ""

    def format(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        text = f"{where}  {self.path or '<root>'}  {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class ConfigError(LLMOpsError):
    """A config file has problems; ``issues`` lists every one of them."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = list(issues)
        count = len(self.issues)
        header = f"{count} problem{'s' if count != 1 else ''} in config"
        super().__init__(header + ":\n" + "\n".join(i.format() for i in self.issues))


class ComponentError(LLMOpsError):
    """A component could not be found or built."""


class UnknownComponent(ComponentError):
    def __init__(self, kind: str, name: str, known: Sequence[str], suggestion: str | None) -> None:
        self.kind, self.name, self.known, self.suggestion = kind, name, list(known), suggestion
        msg = f"unknown {kind} '{name}'; allowed: {', '.join(sorted(known)) or '(none)'}"
        if suggestion:
            msg += f"; did you mean '{suggestion}'?"
        super().__init__(msg)


class MissingDependency(ComponentError):
    def __init__(self, module: str, extra: str) -> None:
        self.module, self.extra = module, extra
        self.install = f"pip install 'llmops[{extra}]'"
        super().__init__(f"the optional library '{module}' is not installed; fix: {self.install}")


class LoadError(LLMOpsError):
    """A single source file could not be loaded; the run reports it and goes on."""

    def __init__(self, source: str, reason: str) -> None:
        self.source, self.reason = source, reason
        super().__init__(f"{source}: {reason}")


class IngestError(LLMOpsError):
    """An ingestion could not start or finish (not a single bad file)."""


class DatasetError(LLMOpsError):
    """An evaluation dataset (a BEIR folder, a golden set) is missing a file or has a bad line;
    the message names the file and line."""


class InvalidRequest(LLMOpsError):
    """A request that is well-formed JSON but cannot be served as asked."""


class UnknownModel(InvalidRequest):
    """A model (or alias) this server does not serve."""


class NotFound(InvalidRequest):
    """A named record the request asks for (an eval run) does not exist; the message says
    where it was looked for."""


@dataclass(frozen=True)
class RowProblem:
    """One problem of one row (``row`` None: the whole batch) in one column (or none)."""

    row: int | None
    column: str | None
    message: str

    def format(self) -> str:
        where = "batch" if self.row is None else f"row {self.row}"
        return f"{where}{f', column {self.column!r}' if self.column else ''}: {self.message}"


class InvalidRows(InvalidRequest):
    """Rows sent for prediction that break the model's schema; ``problems`` says where."""

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        self.problems = list(problems)
        shown = "; ".join(p.format() for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"{len(self.problems)} problem(s) in the rows: {shown}{more}")


class NotReady(LLMOpsError):
    """The service or its index is not ready to answer."""


class StorageError(NotReady):
    """A file on disk cannot be used: its disk is full, another process holds its lock past
    the wait, or it is corrupt. The message names the file or folder and how to recover."""

    def __init__(self, path: str, problem: str, fix: str = "") -> None:
        self.path, self.problem, self.fix = path, problem, fix
        super().__init__(f"{path}: {problem}" + (f"; {fix}" if fix else ""))


class BackendError(LLMOpsError):
    """A model backend failed after its retries, refused the request, or timed out."""

    def __init__(self, backend: str, reason: str, *, retryable: bool = False) -> None:
        self.backend, self.reason, self.retryable = backend, reason, retryable
        super().__init__(f"{backend}: {reason}")


class RegistryError(LLMOpsError):
    """The model registry is unreachable or lacks a model, version or alias (says what exists)."""


class UnknownVersion(RegistryError):
    """The registry has no such model, version or alias (the message says what it has)."""
