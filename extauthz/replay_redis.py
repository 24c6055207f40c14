"""Webhook replay protection shared by every PDP replica, in Redis.

One atomic ``SET <prefix><event> <token> NX EX <ttl>`` per event: the first replica to see an
event id wins, every later one (any process) gets "already seen". Implements the engine's
``AsyncReplayStore`` protocol.

Failure is explicit: any Redis problem (refused, timeout, auth, read-only replica, pool
exhausted) becomes ``ReplayStoreUnavailable`` and the engine fails closed (or open, if
configured). Timeouts are short because a claim sits on the request path under Envoy's
ext_authz deadline, and redis-py's own retries are OFF: a blindly retried ``SET NX`` whose
first reply was lost would report a fresh event as a replay. Instead a claim that fails with a
connection error (a pooled connection that died with a restarted Redis) is retried once on a
fresh connection and, if the key exists, compared with this claim's unique token. So recovery
is automatic: once Redis answers again the very next claim succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import time
import weakref
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError

from ._exceptions import ReplayStoreUnavailable

DEFAULT_PREFIX = "contractshield:replay:"
DEFAULT_SOCKET_TIMEOUT = 0.05  # seconds per read/write; a healthy local Redis answers in ~0.2 ms
DEFAULT_CONNECT_TIMEOUT = 0.1
DEFAULT_MAX_CONNECTIONS = 64
MAX_KEY_ID_LENGTH = 128
_SAFE_ID = re.compile(r"[A-Za-z0-9_.:@-]+")

ReplayOp = Literal["claim", "ping"]
# claim -> "claimed" (first time seen) | "duplicate" (replay) | "error"; ping -> "ok" | "error"
ResultCallback = Callable[[str, str], Any]


def sanitize_event_id(event_id: str) -> str:
    """The key part for an event id: itself if short and plain, else ``sha256:<hex>``.

    Keeps keys bounded and free of spaces, newlines and glob characters whatever a webhook
    sender puts in its id.
    """
    if 0 < len(event_id) <= MAX_KEY_ID_LENGTH and _SAFE_ID.fullmatch(event_id):
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()


def redact_url(url: str) -> str:
    """The URL without its password, for logs and ``/health``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


class RedisReplayStore:
    """``AsyncReplayStore`` on Redis; one pooled client per event loop that uses it."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        on_result: ResultCallback | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self._on_result = on_result
        # redis.asyncio connections belong to the loop that opened them; the gRPC server and
        # an HTTP server may run different loops, so each loop gets its own small pool.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    def key_for(self, event_key: str) -> str:
        return self.prefix + sanitize_event_id(event_key)

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        """True the first time ``key`` is seen within ``ttl_seconds``; raises when Redis is down."""
        token = f"{int(time.time())}:{os.getpid()}:{secrets.token_hex(8)}"
        try:
            created = await self._set_nx(self.key_for(key), token, max(1, int(ttl_seconds)))
        except (RedisError, OSError, TimeoutError) as exc:
            self._report("claim", "error")
            raise ReplayStoreUnavailable(
                f"redis replay store {self.safe_url}: {type(exc).__name__}: {exc}"
            ) from exc
        self._report("claim", "claimed" if created else "duplicate")
        return bool(created)

    async def _set_nx(self, key: str, token: str, ttl: int) -> bool:
        client = self._client()
        try:
            return bool(await client.set(key, token, nx=True, ex=ttl))
        except ConnectionError:
            # A pooled connection that died with a restarted Redis fails once; the retry gets a
            # fresh one. Had the first SET landed after all, the key holds our own token.
            if await client.set(key, token, nx=True, ex=ttl):
                return True
            return bool(await client.get(key) == token.encode())

    async def ping(self) -> float:
        """Round-trip latency in milliseconds; raises ``ReplayStoreUnavailable``."""
        started = time.perf_counter()
        client = self._client()
        try:
            try:
                await client.ping()
            except ConnectionError:  # a stale pooled connection; PING is safe to repeat
                await client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            self._report("ping", "error")
            raise ReplayStoreUnavailable(
                f"redis replay store {self.safe_url}: {type(exc).__name__}: {exc}"
            ) from exc
        self._report("ping", "ok")
        return (time.perf_counter() - started) * 1000

    async def close(self) -> None:
        """Close this loop's pool; pools of other (possibly closed) loops are dropped."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        self._clients.clear()
        if client is not None:
            await client.aclose()

    def _client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.max_connections,
                timeout=self.socket_timeout,  # waiting for a free pooled connection
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.connect_timeout,
                retry=Retry(NoBackoff(), 0),
            )
            client = aioredis.Redis.from_pool(pool)
            self._clients[loop] = client
        return client

    def _report(self, op: ReplayOp, result: str) -> None:
        if self._on_result is not None:
            with contextlib.suppress(Exception):  # metrics must never break a decision
                self._on_result(op, result)

    def __repr__(self) -> str:
        return f"RedisReplayStore({self.safe_url!r}, prefix={self.prefix!r})"
