"""A real redis-server on a free loopback port, for the tests of the Redis routing state
(started once per module, stopped by its process group)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_server import running_redis


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with running_redis() as url:
        yield url
