"""A fresh PostgreSQL database per test on the server this machine (and CI) runs on
127.0.0.1:5432 (trust auth), dropped afterwards. ``LLMOPS_TEST_POSTGRES`` names another server
(a libpq URL without the database)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SERVER = os.environ.get("LLMOPS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


@contextmanager
def fresh_database(server: str = SERVER) -> Iterator[str]:
    """``postgresql://...`` of an empty database on ``server``, dropped when the block ends (a
    test's, or a benchmark's outside pytest)."""
    import psycopg

    try:
        admin = psycopg.connect(f"{server}/test", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {server} (CI runs one): {exc}"
        ) from None
    name = f"llmops_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{server}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """``postgresql://...`` of an empty database that lives for one test."""
    pytest.importorskip("psycopg")
    with fresh_database() as url:
        yield url
