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

Three topologies, chosen by the URL's scheme (``parse_redis_url``): one Redis
(``redis://``, ``rediss://``, ``unix://``), a primary found through Redis Sentinel
(``redis+sentinel://``) and Redis Cluster (``redis+cluster://``). Redis replicates
asynchronously, so a claim the primary acknowledged can vanish with it in a failover; with
``min_replicas`` (the default for Sentinel and Cluster) each new claim is followed by ``WAIT``
on the same connection and counts only once a replica holds it. A claim no replica confirmed
within ``wait_ms`` is withdrawn (deleted if it still holds our token) and reported as an
outage, so the sender's retry is not mistaken for a replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import re
import secrets
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError

from ._exceptions import InvalidConfig, ReplayStoreUnavailable

DEFAULT_PREFIX = "contractshield:replay:"
DEFAULT_SOCKET_TIMEOUT = 0.05  # seconds per read/write; a healthy local Redis answers in ~0.2 ms
DEFAULT_CONNECT_TIMEOUT = 0.1
DEFAULT_MAX_CONNECTIONS = 64
MAX_KEY_ID_LENGTH = 128
_SAFE_ID = re.compile(r"[A-Za-z0-9_.:@-]+")

DEFAULT_WAIT_MS = 20  # WAIT's bound; a healthy replica on the same network acks in < 1 ms

ReplayOp = Literal["claim", "ping"]
Topology = Literal["single", "sentinel", "cluster"]
_SCHEMES: dict[str, tuple[Topology, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
# Query options of the Sentinel and Cluster URLs (a plain URL passes redis-py's own through).
_FLOAT_OPTIONS = ("socket_timeout", "socket_connect_timeout")
_INT_OPTIONS = ("min_replicas", "wait_ms")
_TEXT_OPTIONS = ("sentinel_username", "sentinel_password", "ssl_ca_certs")
# The claim is withdrawn only if it is still ours: a retry may have stored its own token.
_WITHDRAW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a ``REDIS_URL`` names: the topology, where to find it, and the claim options."""

    topology: Topology
    url: str  # as given (a single Redis is opened from it, minus our own options)
    hosts: tuple[tuple[str, int], ...] = ()  # sentinels, or cluster seed nodes
    service: str = ""  # the Sentinel service (``sentinel monitor <service> ...``)
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    min_replicas: int = 0  # WAIT for this many replicas after a new claim; 0 = no WAIT
    wait_ms: int = DEFAULT_WAIT_MS
    options: dict[str, Any] = field(default_factory=dict)  # socket timeouts, sentinel auth, CA


def parse_redis_url(url: str) -> RedisTarget:
    """Read ``REDIS_URL``; ``InvalidConfig`` names what is wrong (never the password).

    ``redis://[user:pass@]host:port/db``, ``rediss://`` (TLS), ``unix:///path?db=N`` as
    redis-py reads them, plus:

    - ``redis+sentinel://[user:pass@]host:port[,host:port...]/service[/db]``: the sentinels,
      then the service name they monitor; the credentials are the data nodes' (the sentinels'
      go in ``sentinel_username``/``sentinel_password``).
    - ``redis+cluster://[user:pass@]host:port[,host:port...]``: seed nodes (the rest are
      discovered); Cluster has database 0 only.
    - ``rediss+sentinel://``, ``rediss+cluster://``: TLS to every node (``ssl_ca_certs=FILE``).
    - query options: ``socket_timeout``, ``socket_connect_timeout`` (seconds),
      ``min_replicas`` (WAIT for this many replicas after each new claim; 1 by default for
      Sentinel and Cluster, 0 for a single Redis) and ``wait_ms`` (WAIT's bound, below the
      socket timeout).
    """
    shown = redact_url(url)
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise InvalidConfig(
            "REDIS_URL: expected redis://, rediss://, unix://, redis+sentinel://, "
            f"rediss+sentinel://, redis+cluster:// or rediss+cluster://, got {shown!r}"
        )
    topology, tls = _SCHEMES[scheme.lower()]
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if len(query) != len(parse_qsl(parts.query, keep_blank_values=True)):
        raise InvalidConfig(f"REDIS_URL: an option is given twice in {shown!r}")
    min_replicas = _int_option(query.pop("min_replicas", None), "min_replicas", shown)
    wait_ms = _int_option(query.pop("wait_ms", None), "wait_ms", shown)
    if topology == "single":
        if not parts.hostname and scheme.lower() != "unix":
            raise InvalidConfig(f"REDIS_URL: no host in {shown!r}")
        plain = urlunsplit(parts._replace(query=urlencode(query)))
        return _with_wait(
            RedisTarget("single", plain, tls=tls),
            min_replicas if min_replicas is not None else 0,
            wait_ms,
            query,
            shown,
        )
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    hosts = tuple(_host_port(item, shown) for item in hostlist.split(","))
    segments = [s for s in parts.path.split("/") if s]
    service, db = "", 0
    if topology == "sentinel":
        if not segments:
            raise InvalidConfig(
                f"REDIS_URL: no service name in {shown!r} "
                "(redis+sentinel://host:port,host:port/SERVICE[/DB])"
            )
        service = unquote(segments[0])
        db_text = segments[1] if len(segments) > 1 else "0"
        extra = segments[2:]
    else:
        db_text = segments[0] if segments else "0"
        extra = segments[1:]
    if extra or not db_text.isdigit():
        raise InvalidConfig(f"REDIS_URL: expected a database number after the hosts in {shown!r}")
    db = int(db_text)
    if topology == "cluster" and db != 0:
        raise InvalidConfig(f"REDIS_URL: Redis Cluster has database 0 only, got {db} in {shown!r}")
    options: dict[str, Any] = {}
    for key, value in query.items():
        if key in _FLOAT_OPTIONS:
            options[key] = _float_option(value, key, shown)
        elif key in _TEXT_OPTIONS and not (key.startswith("sentinel_") and topology != "sentinel"):
            options[key] = value
        else:
            known = ", ".join(
                k
                for k in (*_FLOAT_OPTIONS, *_INT_OPTIONS, *_TEXT_OPTIONS)
                if topology == "sentinel" or not k.startswith("sentinel_")
            )
            raise InvalidConfig(f"REDIS_URL: unknown option {key!r} (known: {known})")
    if "ssl_ca_certs" in options and not tls:
        raise InvalidConfig(
            "REDIS_URL: ssl_ca_certs needs TLS (rediss+sentinel://, rediss+cluster://)"
        )
    target = RedisTarget(
        topology, url, hosts, service, db, username, password, tls, options=options
    )
    return _with_wait(target, 1 if min_replicas is None else min_replicas, wait_ms, query, shown)


def _with_wait(
    target: RedisTarget,
    min_replicas: int,
    wait_ms: int | None,
    query: dict[str, str],
    shown: str,
) -> RedisTarget:
    wait = DEFAULT_WAIT_MS if wait_ms is None else wait_ms
    if wait <= 0:
        raise InvalidConfig(f"REDIS_URL: wait_ms must be a positive number of ms in {shown!r}")
    socket_timeout = target.options.get("socket_timeout")
    if socket_timeout is None and "socket_timeout" in query:
        socket_timeout = _float_option(query["socket_timeout"], "socket_timeout", shown)
    bound = DEFAULT_SOCKET_TIMEOUT if socket_timeout is None else socket_timeout
    if min_replicas and wait >= bound * 1000:
        raise InvalidConfig(
            f"REDIS_URL: wait_ms ({wait}) must be below socket_timeout ({bound * 1000:g} ms), "
            "or the socket gives up before WAIT answers"
        )
    return dataclasses.replace(target, min_replicas=min_replicas, wait_ms=wait)


def _host_port(item: str, shown: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise InvalidConfig(f"REDIS_URL: expected HOST:PORT, got {item!r} in {shown!r}")
    return host, int(port)


def _int_option(value: str | None, name: str, shown: str) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        raise InvalidConfig(f"REDIS_URL: {name} must be a whole number, got {value!r} in {shown!r}")
    return int(value)


def _float_option(value: str, name: str, shown: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0:
        raise InvalidConfig(
            f"REDIS_URL: {name} must be a positive number of seconds, got {value!r}"
        )
    return number


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
    """The URL without its passwords (user info and ``*password`` options), for logs and
    ``/health``; host lists (``h1:1,h2:2``) are kept as written."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
    query = parts.query
    if "password" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{k}=***" if k.endswith("password") else urlencode({k: v}) for k, v in pairs
        )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


RedisClient = aioredis.Redis | aioredis.RedisCluster


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
        self.target = parse_redis_url(url)  # InvalidConfig before anything connects
        self.prefix = prefix
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self._on_result = on_result
        # redis.asyncio connections belong to the loop that opened them; the gRPC server and
        # an HTTP server may run different loops, so each loop gets its own small pool.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisClient] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    def key_for(self, event_key: str) -> str:
        return self.prefix + sanitize_event_id(event_key)

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        """True the first time ``key`` is seen within ``ttl_seconds``; raises when Redis is down
        (or, with ``min_replicas``, when no replica confirmed the new claim in time)."""
        token = f"{int(time.time())}:{os.getpid()}:{secrets.token_hex(8)}"
        try:
            created = await self._set_nx(self.key_for(key), token, max(1, int(ttl_seconds)))
        except (RedisError, OSError, TimeoutError, _NotReplicated) as exc:
            self._report("claim", "error")
            raise ReplayStoreUnavailable(
                f"redis replay store {self.safe_url}: {type(exc).__name__}: {exc}"
            ) from exc
        self._report("claim", "claimed" if created else "duplicate")
        return bool(created)

    async def _set_nx(self, key: str, token: str, ttl: int) -> bool:
        client = self._client()
        try:
            return await self._set_nx_once(client, key, token, ttl)
        except ConnectionError:
            # A pooled connection that died with a restarted Redis (or a primary that failed
            # over) fails once; the retry gets a fresh one. Had the first SET landed after
            # all, the key holds our own token.
            if await self._set_nx_once(client, key, token, ttl):
                return True
            return bool(await client.get(key) == token.encode())

    async def _set_nx_once(self, client: RedisClient, key: str, token: str, ttl: int) -> bool:
        need = self.target.min_replicas
        if not need:
            return bool(await client.set(key, token, nx=True, ex=ttl))
        # WAIT counts the replicas that have every write of *this connection*: SET and WAIT
        # go down one connection as a pipeline (Cluster: to the node that owns the key).
        pipe = client.pipeline(transaction=False)
        pipe.set(key, token, nx=True, ex=ttl)
        wait_args: tuple[Any, ...] = ("WAIT", need, self.target.wait_ms)
        if isinstance(client, aioredis.RedisCluster):
            await client.initialize()
            pipe.execute_command(*wait_args, target_nodes=client.get_node_from_key(key))
        else:
            pipe.execute_command(*wait_args)
        created, acked = await pipe.execute()
        if not created:
            return False
        if int(acked) < need:
            # Not durable: a failover now could lose it. Withdraw it (if still ours) so the
            # sender's retry is judged afresh, and say the store could not answer.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await client.eval(_WITHDRAW, 1, key, token)
            raise _NotReplicated(
                f"claim confirmed by {acked} of {need} replica(s) within {self.target.wait_ms} ms"
            )
        return True

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

    def _client(self) -> RedisClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._new_client()
            self._clients[loop] = client
        return client

    def _new_client(self) -> RedisClient:
        target = self.target
        if target.topology == "single":
            pool = aioredis.BlockingConnectionPool.from_url(
                target.url,
                max_connections=self.max_connections,
                timeout=self.socket_timeout,  # waiting for a free pooled connection
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.connect_timeout,
                retry=Retry(NoBackoff(), 0),
            )
            return aioredis.Redis.from_pool(pool)
        options = dict(target.options)
        common: dict[str, Any] = {
            "socket_timeout": options.pop("socket_timeout", self.socket_timeout),
            "socket_connect_timeout": options.pop("socket_connect_timeout", self.connect_timeout),
            "username": target.username,
            "password": target.password,
            "retry": Retry(NoBackoff(), 0),
        }
        if target.tls:
            common["ssl"] = True
            if "ssl_ca_certs" in options:
                common["ssl_ca_certs"] = options.pop("ssl_ca_certs")
        if target.topology == "cluster":
            from redis.asyncio.cluster import ClusterNode

            return aioredis.RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
                max_connections=self.max_connections,
                **common,  # retry=0: no blind retries (module docstring)
            )
        from redis.asyncio.sentinel import Sentinel

        sentinel_kwargs = {
            "socket_timeout": common["socket_timeout"],
            "socket_connect_timeout": common["socket_connect_timeout"],
            "username": options.pop("sentinel_username", None),
            "password": options.pop("sentinel_password", None),
            "retry": Retry(NoBackoff(), 0),
        }
        if target.tls:
            sentinel_kwargs.update({k: v for k, v in common.items() if k.startswith("ssl")})
        sentinels = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs)
        return sentinels.master_for(
            target.service, db=target.db, max_connections=self.max_connections, **common
        )

    def _report(self, op: ReplayOp, result: str) -> None:
        if self._on_result is not None:
            with contextlib.suppress(Exception):  # metrics must never break a decision
                self._on_result(op, result)

    def __repr__(self) -> str:
        return f"RedisReplayStore({self.safe_url!r}, prefix={self.prefix!r})"


class _NotReplicated(Exception):
    """A new claim that no replica confirmed in time (``min_replicas``), since withdrawn."""
