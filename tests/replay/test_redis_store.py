"""RedisReplayStore against a real redis-server: claims, keys, TTLs, outage and recovery."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from extauthz import ReplayStoreUnavailable
from extauthz.devstack.redis import RedisServer
from extauthz.replay_redis import (
    DEFAULT_PREFIX,
    RedisReplayStore,
    redact_url,
    sanitize_event_id,
)


def store_for(url: str, **kwargs: Any) -> RedisReplayStore:
    """Timeouts relaxed from the 50/100 ms defaults: the test machine is shared and busy, and
    these tests are about behaviour, not timeouts (``test_a_hung_redis...`` keeps the default)."""
    kwargs.setdefault("socket_timeout", 1.0)
    kwargs.setdefault("connect_timeout", 1.0)
    return RedisReplayStore(url, **kwargs)


def raw(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=2)


async def test_first_claim_wins_and_repeat_is_a_replay(redis_server: RedisServer) -> None:
    store = store_for(redis_server.url)
    try:
        assert await store.claim("stripe:evt_1", 300) is True
        assert await store.claim("stripe:evt_1", 300) is False
        assert await store.claim("stripe:evt_2", 300) is True
    finally:
        await store.close()


async def test_replicas_sharing_redis_see_each_others_events(redis_server: RedisServer) -> None:
    first, second = store_for(redis_server.url), store_for(redis_server.url)
    try:
        assert await first.claim("github:delivery-42", 300) is True
        assert await second.claim("github:delivery-42", 300) is False
    finally:
        await first.close()
        await second.close()


async def test_concurrent_claims_of_one_event_admit_exactly_one(redis_server: RedisServer) -> None:
    store = store_for(redis_server.url)
    try:
        results = await asyncio.gather(*(store.claim("stripe:evt_race", 60) for _ in range(50)))
        assert results.count(True) == 1
    finally:
        await store.close()


async def test_key_is_prefixed_and_expires_after_ttl(redis_server: RedisServer) -> None:
    store = store_for(redis_server.url)
    try:
        await store.claim("stripe:evt_ttl", 300)
    finally:
        await store.close()
    client = raw(redis_server)
    key = DEFAULT_PREFIX + "stripe:evt_ttl"
    assert client.exists(key) == 1
    assert 295 <= client.ttl(key) <= 300
    assert client.keys("*") == [key.encode()]


async def test_custom_prefix_and_minimum_ttl(redis_server: RedisServer) -> None:
    store = store_for(redis_server.url, prefix="tenant-a:")
    try:
        await store.claim("evt", 0)  # a zero TTL would make SET fail; it is clamped to 1 s
    finally:
        await store.close()
    assert 0 < raw(redis_server).ttl("tenant-a:evt") <= 1


@pytest.mark.parametrize(
    "event_id",
    ["x" * 129, "evt with spaces", "evt\r\nFLUSHALL", "evt*?[glob]", "", "évènement"],
)
async def test_odd_event_ids_are_hashed_into_bounded_safe_keys(
    redis_server: RedisServer, event_id: str
) -> None:
    store = store_for(redis_server.url)
    try:
        assert await store.claim(event_id, 60) is True
        assert await store.claim(event_id, 60) is False
    finally:
        await store.close()
    (key,) = raw(redis_server).keys("*")
    assert key.startswith(DEFAULT_PREFIX.encode() + b"sha256:")
    assert len(key) == len(DEFAULT_PREFIX) + len("sha256:") + 64


def test_plain_event_ids_are_kept_readable() -> None:
    assert sanitize_event_id("stripe:evt_1NQ2x3") == "stripe:evt_1NQ2x3"
    assert sanitize_event_id("github:6f1c-4a2e@x.y") == "github:6f1c-4a2e@x.y"
    assert sanitize_event_id("a" * 128) == "a" * 128
    assert sanitize_event_id("a" * 129) != sanitize_event_id("a" * 130)


def test_password_is_redacted_from_the_url() -> None:
    assert redact_url("redis://:s3cret@h:6380/0") == "redis://:***@h:6380/0"
    assert redact_url("redis://user:s3cret@h/0") == "redis://user:***@h/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    store = RedisReplayStore("redis://:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in repr(store)


async def test_outage_raises_unavailable_and_recovery_is_automatic(
    redis_server: RedisServer,
) -> None:
    seen: list[tuple[str, str]] = []
    store = store_for(redis_server.url, on_result=lambda op, r: seen.append((op, r)))
    try:
        assert await store.claim("evt-before", 300) is True
        assert await store.ping() > 0

        redis_server.kill()
        with pytest.raises(ReplayStoreUnavailable) as info:
            await store.claim("evt-during", 300)
        assert isinstance(info.value.__cause__, redis.RedisError)
        assert info.value.code == "replay_store_unavailable"
        with pytest.raises(ReplayStoreUnavailable):
            await store.ping()

        redis_server.start()  # same port, empty (no persistence)
        assert await store.claim("evt-after", 300) is True
        assert await store.ping() > 0
    finally:
        await store.close()
    assert ("claim", "error") in seen and ("ping", "error") in seen
    assert seen[-2:] == [("claim", "claimed"), ("ping", "ok")]


async def test_restart_between_claims_does_not_fail_the_next_claim(
    redis_server: RedisServer,
) -> None:
    """Pooled connections die with the old Redis; the next claim must not pay for that."""
    store = store_for(redis_server.url)
    try:
        await asyncio.gather(*(store.claim(f"warm-{i}", 60) for i in range(8)))
        redis_server.restart()
        assert [await store.claim(f"fresh-{i}", 60) for i in range(8)] == [True] * 8
        assert await store.ping() > 0
    finally:
        await store.close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a hung Redis."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


async def test_a_hung_redis_times_out_quickly(silent_server: str) -> None:
    """A Redis that accepts and never answers costs one read timeout, then a deterministic error.

    Not timed: the bound is the configuration (50 ms read, 100 ms connect, no retry: far below
    Envoy's 200 ms ext_authz deadline), and the claim must end in a Timeout, not hang.
    """
    store = RedisReplayStore(silent_server)  # default timeouts: 50 ms read, 100 ms connect
    assert (store.socket_timeout, store.connect_timeout) == (0.05, 0.1)
    try:
        with pytest.raises(ReplayStoreUnavailable, match="Timeout"):
            await asyncio.wait_for(store.claim("evt", 60), 60)  # 60 s: a hang guard
        pool = store._client().connection_pool
        assert pool.connection_kwargs["socket_timeout"] == 0.05
        assert pool.connection_kwargs["socket_connect_timeout"] == 0.1
        assert pool.connection_kwargs["retry"].get_retries() == 0  # one attempt, no retry
    finally:
        await store.close()


async def test_each_event_loop_gets_its_own_pool(redis_server: RedisServer) -> None:
    """The gRPC server and an HTTP thread may run different loops over one store."""
    store = store_for(redis_server.url)
    result: list[float] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(store.ping())))
    thread.start()
    thread.join(10)
    try:
        assert result and result[0] > 0
        assert await store.claim("evt-main-loop", 60) is True
    finally:
        await store.close()


async def test_timeouts_can_be_tuned_in_the_url() -> None:
    store = RedisReplayStore("redis://127.0.0.1:1/0?socket_timeout=0.5&socket_connect_timeout=2")
    try:
        kwargs = store._client().connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 0.5
        assert kwargs["socket_connect_timeout"] == 2.0
        retry = kwargs["retry"]  # redis-py < 6 has no get_retries()
        retries = retry.get_retries() if hasattr(retry, "get_retries") else retry._retries
        assert retries == 0, "redis-py's blind retries stay off"
    finally:
        await store.close()
