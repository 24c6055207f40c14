"""A real redis-server per test (started on a free port in a temp dir, always stopped)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from extauthz.devstack.redis import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.cleanup()
