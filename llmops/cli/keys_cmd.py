"""llmops keys create · list · revoke · rotate: an app's API keys (server.auth / serving.auth).

Keys are stored in the app's data dir as HMAC-SHA256 digests keyed by LLMOPS_KEY_SECRET (the
same secret the server has); a key's text is printed once, at creation or rotation.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from llmops.access.keys import KeyInfo, KeyStore, parse_duration, server_secret
from llmops.cli.common import ConfigArg, console, run
from llmops.config import config_kind, load_app_config, load_model_app_config, resolve_path
from llmops.config.auth import RateLimits

RPM = typer.Option(None, "--rpm", min=1, help="This key's requests per minute.")
CONCURRENT = typer.Option(None, min=1, help="This key's requests in flight at once.")
TOKENS_PER_DAY = typer.Option(None, min=1, help="This key's LLM tokens per UTC day (RAG apps).")

app = typer.Typer(
    help="API keys of an app: scopes query, feedback, ingest, eval, predict, models, admin. "
    "Needs LLMOPS_KEY_SECRET (the server's).",
    no_args_is_help=True,
)


def _store(config: Path) -> KeyStore:
    def open_store() -> KeyStore:
        if config_kind(config) == "model":
            loaded = load_model_app_config(config)
            data_dir = resolve_path(loaded.base_dir, loaded.app.data_dir)
        else:
            rag = load_app_config(config)
            data_dir = resolve_path(rag.base_dir, rag.app.data_dir)
        return KeyStore(data_dir, server_secret())

    return run(open_store)


def _shown(key: str, info: KeyInfo) -> None:
    console.print(f"key id {info.id}  ({info.name}; scopes {', '.join(sorted(info.scopes))})")
    console.print("the key, shown only now; send it as `Authorization: Bearer <key>`:")
    print(key)


@app.command()
def create(
    config: ConfigArg,
    scopes: str = typer.Option(..., help="Comma-separated, e.g. query,feedback."),
    name: str = typer.Option("", help="Who or what it is for."),
    expires: str | None = typer.Option(None, help="Lifetime, e.g. 30d, 12h (default: none)."),
    rpm: int | None = RPM,
    concurrent: int | None = CONCURRENT,
    tokens_per_day: int | None = TOKENS_PER_DAY,
) -> None:
    """Create a key and print it once. Limits given here replace the app's (server.auth.limits)
    for this key; `llmops keys limits` changes them later."""
    store = _store(config)
    expiry = None if expires is None else time.time() + run(lambda: parse_duration(expires))
    own = RateLimits(requests_per_minute=rpm, concurrent=concurrent, tokens_per_day=tokens_per_day)
    info, key = run(lambda: store.create(name, scopes.split(","), expiry, own))
    _shown(key, info)


@app.command()
def limits(
    config: ConfigArg,
    key_id: str = typer.Argument(..., help="The key's id."),
    rpm: int | None = RPM,
    concurrent: int | None = CONCURRENT,
    tokens_per_day: int | None = TOKENS_PER_DAY,
) -> None:
    """Set a key's own limits (those left out fall back to the app's); running servers apply
    them within server.auth.cache_ttl_s."""
    store = _store(config)
    own = RateLimits(requests_per_minute=rpm, concurrent=concurrent, tokens_per_day=tokens_per_day)
    info = run(lambda: store.set_limits(key_id, own))
    console.print(f"key {info.id} ({info.name}): limits {_limits(info)}")


@app.command("list")
def list_keys(config: ConfigArg) -> None:
    """Every key: id, name, scopes, own limits, created, expires, last used, status (never
    the key)."""
    now = time.time()
    table = Table("id", "name", "scopes", "limits", "created", "expires", "last used", "status")
    for info in _store(config).list():
        table.add_row(
            info.id, info.name, ",".join(sorted(info.scopes)), _limits(info),
            _date(info.created), _date(info.expires), _date(info.last_used), info.status(now),
        )  # fmt: skip
    console.print(table)


def _limits(info: KeyInfo) -> str:
    own = info.limits.model_dump(exclude_none=True)
    return ", ".join(f"{k}={v}" for k, v in own.items()) or "the app's"


@app.command()
def revoke(config: ConfigArg, key_id: str = typer.Argument(..., help="The key's id.")) -> None:
    """Revoke a key: servers refuse it within server.auth.cache_ttl_s."""
    store = _store(config)
    info = run(lambda: store.revoke(key_id))
    console.print(f"revoked key {info.id} ({info.name})")


@app.command()
def rotate(config: ConfigArg, key_id: str = typer.Argument(..., help="The key's id.")) -> None:
    """A new key with the same name, scopes and expiry; the old one is revoked."""
    store = _store(config)
    info, key = run(lambda: store.rotate(key_id))
    console.print(f"revoked key {key_id}")
    _shown(key, info)


def _date(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
