"""``ContractShieldClient`` and ``AsyncContractShieldClient``: a remote PDP that feels local.

Both wrap a transport with the same three layers (``_BaseClient``): a decision cache that
never changes a decision (see ``_cache``), retries on transport failures only (each attempt
with its own deadline; a BLOCK is an answer and is never retried), and failover (fail closed
raises ``ContractShieldUnavailable``; fail open returns ``fail_open_decision``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from .._exceptions import (
    ContractShieldError,
    ContractShieldUnavailable,
    InvalidConfig,
    OperationalError,
)
from ..decision import ALLOW, BLOCK, Decision, DecisionMetadata, RuleHit
from ._cache import DEFAULT_CACHE_BYPASS_HEADERS, DEFAULT_CACHE_IGNORED_HEADERS, DecisionCache
from ._http_transport import AsyncHttpTransport, HttpTransport, is_http_target
from ._request import (
    DEFAULT_CLAIM_NAMES,
    CheckInput,
    ClaimNames,
    HeadersInput,
    IdentityInput,
    build_check_request,
    describe,
)
from ._response import to_verdict
from ._tls import TlsOptions
from ._transport import AsyncGrpcTransport, AsyncTransport, GrpcTransport, Transport

log = logging.getLogger("extauthz.client")

DEFAULT_TIMEOUT_MS = 100
DEFAULT_RETRIES = 2
DEFAULT_RETRY_DELAY_MS = 10
DEFAULT_CACHE_ENABLED = True
DEFAULT_CACHE_MAX_SIZE = 1000
DEFAULT_CACHE_TTL_MS = 60_000
DEFAULT_FAIL_OPEN = False
FAIL_OPEN_RULE_ID = "client.failOpen"
DEFAULT_FAIL_OPEN_DECISION = Decision(
    action=ALLOW,
    status_code=200,
    reason="policy decision point unavailable; failing open",
    rule_hits=(RuleHit(FAIL_OPEN_RULE_ID, "med", "no decision from the PDP; allowed by client"),),
    metadata=DecisionMetadata(mode="failOpen"),
)

OnError = Callable[[ContractShieldError], object]
OnCacheHit = Callable[[Decision], object]
OnFailover = Callable[[ContractShieldError, Decision], object]


@dataclass(slots=True, frozen=True)
class ClientStats:
    hits: int  # answers served from the cache
    misses: int  # cache lookups that found nothing (0 while the cache is off)
    size: int  # live entries now
    failovers: int  # fail-open decisions returned
    errors: int  # evaluations that ended without an answer from the PDP
    retries: int  # extra attempts made after a transport failure or timeout
    policy_version: str | None  # last policy version the PDP reported


@dataclass(slots=True, frozen=True)
class Lookup:
    """A cache miss: the policy version and key it was looked up under (no key: uncacheable)."""

    version: str | None
    key: bytes | None


_NO_LOOKUP = Lookup(None, None)


TransportKind = Literal["grpc", "http"]


def _kind(target: str | None, transport: object) -> TransportKind | None:
    """Which built-in transport ``target``/``transport`` ask for; None: a transport object."""
    if isinstance(transport, str):
        if transport not in ("grpc", "http"):
            raise InvalidConfig(
                f"transport: expected 'grpc', 'http' or a transport, got {transport!r}"
            )
        if target is None:
            raise InvalidConfig(f"transport={transport!r} needs a target")
        if transport == "grpc" and is_http_target(target):
            raise InvalidConfig(f"target {target!r} is an HTTP URL: use transport='http'")
        return transport  # type: ignore[return-value]
    if (target is None) == (transport is None):
        raise InvalidConfig("give exactly one of target or transport")
    if target is None:
        return None
    return "http" if is_http_target(target) else "grpc"


def _check_tls(kind: TransportKind | None, tls: TlsOptions | None) -> None:
    """``tls`` configures a built-in transport; a transport object brings its own. (Which
    targets take it is the transports' check: host:port and https:// do, the rest is plain.)"""
    if tls is not None and kind is None:
        raise InvalidConfig("tls applies to a target; a transport object brings its own TLS")


def _call(callback: Callable[..., object], *args: Any) -> None:
    """Callbacks observe; a failing callback is logged and never changes the decision."""
    try:
        callback(*args)
    except Exception:
        log.exception("client callback %r failed", callback)


def _as_error(exc: Exception) -> ContractShieldError:
    if isinstance(exc, ContractShieldError):
        return exc
    err = OperationalError(f"transport failed: {exc!r}")
    err.__cause__ = exc
    return err


TransportT = TypeVar("TransportT", Transport, AsyncTransport)


class _BaseClient(Generic[TransportT]):
    """Options, cache, counters and failover, shared by the sync and async clients: all but the
    call itself, which blocks in one and is awaited in the other."""

    #: The built-in transport for each kind of target.
    _builtin: ClassVar[dict[TransportKind, Callable[..., Any]]]

    def __init__(
        self,
        target: str | None = None,
        *,
        transport: TransportT | TransportKind | None = None,
        timeout_ms: float = DEFAULT_TIMEOUT_MS,
        retries: int = DEFAULT_RETRIES,
        retry_delay_ms: float = DEFAULT_RETRY_DELAY_MS,
        cache_enabled: bool = DEFAULT_CACHE_ENABLED,
        cache_max_size: int = DEFAULT_CACHE_MAX_SIZE,
        cache_ttl_ms: float = DEFAULT_CACHE_TTL_MS,
        cache_ignored_headers: Iterable[str] = DEFAULT_CACHE_IGNORED_HEADERS,
        cache_bypass_headers: Iterable[str] = DEFAULT_CACHE_BYPASS_HEADERS,
        fail_open: bool = DEFAULT_FAIL_OPEN,
        fail_open_decision: Decision = DEFAULT_FAIL_OPEN_DECISION,
        on_error: OnError | None = None,
        on_cache_hit: OnCacheHit | None = None,
        on_failover: OnFailover | None = None,
        claim_names: ClaimNames = DEFAULT_CLAIM_NAMES,
        tls: TlsOptions | None = None,
    ) -> None:
        kind = _kind(target, transport)
        _check_tls(kind, tls)
        if not (isinstance(timeout_ms, int | float) and timeout_ms > 0):
            raise InvalidConfig("timeout_ms: expected a positive number of milliseconds")
        if not (isinstance(retries, int) and retries >= 0):
            raise InvalidConfig("retries: expected a non-negative integer")
        if not (isinstance(retry_delay_ms, int | float) and retry_delay_ms >= 0):
            raise InvalidConfig("retry_delay_ms: expected a non-negative number")
        if cache_enabled:
            if not (isinstance(cache_max_size, int) and cache_max_size > 0):
                raise InvalidConfig("cache_max_size: expected a positive integer")
            if not (isinstance(cache_ttl_ms, int | float) and cache_ttl_ms > 0):
                raise InvalidConfig("cache_ttl_ms: expected a positive number of milliseconds")
        if not isinstance(fail_open_decision, Decision):
            raise InvalidConfig("fail_open_decision: expected a Decision")
        self._timeout = timeout_ms / 1000.0
        self._retries = retries
        self._retry_delay = retry_delay_ms / 1000.0
        self._fail_open = fail_open
        self._fail_open_decision = fail_open_decision
        self._on_error = on_error
        self._on_cache_hit = on_cache_hit
        self._on_failover = on_failover
        self._claim_names = claim_names
        self._cache: DecisionCache | None = (
            DecisionCache(
                max_size=cache_max_size,
                ttl_seconds=cache_ttl_ms / 1000.0,
                ignored_headers=frozenset(h.lower() for h in cache_ignored_headers),
                bypass_headers=frozenset(h.lower() for h in cache_bypass_headers),
            )
            if cache_enabled
            else None
        )
        self._lock = threading.Lock()
        self._failovers = self._errors = self._retried = 0
        self._policy_version: str | None = None
        self._transport: TransportT
        if kind is None:
            self._transport = transport  # type: ignore[assignment]
        else:
            self._transport = self._builtin[kind](target, tls=tls)

    # -- the steps of one evaluation, around the call -------------------------------------

    def _prepare(self, inp: CheckInput) -> Decision | tuple[CheckRequest, Lookup]:
        """The cached decision, or (on a miss) the request to send and the ``Lookup`` to hand
        to ``_store``. ``InvalidContext`` for a request that cannot be described: the caller's."""
        lookup = self._lookup(inp)
        if isinstance(lookup, Decision):
            return lookup
        return build_check_request(inp, self._claim_names), lookup

    def _lookup(self, inp: CheckInput) -> Decision | Lookup:
        cache = self._cache
        if cache is None:
            return _NO_LOOKUP
        version = self._policy_version
        key = cache.key(inp, version)
        if key is None:
            return _NO_LOOKUP
        hit = cache.get(key)  # counts the hit or miss
        if hit is None:
            return Lookup(version, key)
        if self._on_cache_hit is not None:
            _call(self._on_cache_hit, hit)
        return hit

    def _store(self, inp: CheckInput, response: CheckResponse, looked_up: Lookup) -> Decision:
        verdict = to_verdict(response)
        version = verdict.policy_version
        if version is not None and version != self._policy_version:
            with self._lock:
                changed = version != self._policy_version
                self._policy_version = version
            if changed and self._cache is not None:
                self._cache.clear()  # a reload may change any decision
        cache = self._cache
        decision = verdict.decision
        if cache is not None and verdict.cacheable and decision.action != BLOCK:
            # the key of the lookup, unless the answer came under another policy version
            key = looked_up.key if looked_up.version == version else cache.key(inp, version)
            if key is not None:
                cache.put(key, decision)
        return decision

    def _after_failure(self, exc: Exception, attempt: int) -> float | Decision:
        """After attempt ``attempt`` (0 first) failed: the delay before the next one, or the
        failover decision (fail closed raises ``ContractShieldUnavailable``). Only transport
        failures (unavailable, timeout) are retried; a refusal would be refused again."""
        error = _as_error(exc)
        if isinstance(error, ContractShieldUnavailable) and attempt < self._retries:
            with self._lock:
                self._retried += 1
            # exponential backoff with jitter: delay * 2**attempt * [0.5, 1.5)
            return self._retry_delay * (2**attempt) * (0.5 + random.random())
        return self._fail(error)

    def _fail(self, exc: ContractShieldError) -> Decision:
        with self._lock:
            self._errors += 1
        if self._on_error is not None:
            _call(self._on_error, exc)
        if not self._fail_open:
            if isinstance(exc, ContractShieldUnavailable):
                raise exc
            raise ContractShieldUnavailable(str(exc)) from exc
        with self._lock:
            self._failovers += 1
        decision = self._fail_open_decision
        if self._on_failover is not None:
            _call(self._on_failover, exc, decision)
        return decision

    def stats(self) -> ClientStats:
        cache = self._cache
        size = len(cache) if cache is not None else 0
        with self._lock:
            return ClientStats(
                hits=cache.hits if cache is not None else 0,
                misses=cache.misses if cache is not None else 0,
                size=size,
                failovers=self._failovers,
                errors=self._errors,
                retries=self._retried,
                policy_version=self._policy_version,
            )

    def clear_cache(self) -> None:
        if self._cache is not None:
            self._cache.clear()


class ContractShieldClient(_BaseClient[Transport]):
    """Blocking client; thread-safe, one gRPC channel (or HTTP connection pool) for all threads.

    ``target``: ``unix:///path/pdp.sock`` or ``host:port`` (gRPC), ``http://host:port``,
    ``https://host:port`` or ``http+unix:///path/http.sock`` (HTTP); ``transport="http"``
    makes a ``unix://`` target HTTP too. Or pass a ``Transport`` object and no target.
    ``tls``: for a ``host:port`` or ``https://`` target (``TlsOptions``).

    >>> with ContractShieldClient("unix:///run/extauthz/pdp.sock") as pdp:
    ...     decision = pdp.evaluate("POST", "/api/v1/licenses/activate", body=b"{...}")
    """

    _builtin = {"grpc": GrpcTransport, "http": HttpTransport}

    def evaluate(
        self,
        method: str,
        path: str,
        *,
        headers: HeadersInput = None,
        body: bytes | None = None,
        identity: IdentityInput = None,
        client_ip: str | None = None,
        host: str | None = None,
        scheme: str | None = None,
        context_extensions: Mapping[str, str] | None = None,
    ) -> Decision:
        """Decide one request. ``path`` includes the query string; ``identity`` is an
        ``Identity`` or the verified JWT claims. Raises ``InvalidContext`` for a bad
        description and, when failing closed, ``ContractShieldUnavailable``."""
        inp = describe(
            method,
            path,
            headers=headers,
            body=body,
            identity=identity,
            client_ip=client_ip,
            host=host,
            scheme=scheme,
            context_extensions=context_extensions,
        )
        return self.evaluate_input(inp)

    def evaluate_input(self, inp: CheckInput) -> Decision:
        """Decide a request already described with ``describe`` (used by the middleware)."""
        prepared = self._prepare(inp)
        if isinstance(prepared, Decision):
            return prepared  # a cache hit
        request, looked_up = prepared
        attempt = 0
        while True:
            try:
                response = self._transport.check(request, self._timeout)
            except Exception as exc:
                after = self._after_failure(exc, attempt)
                if isinstance(after, Decision):
                    return after
                time.sleep(after)
                attempt += 1
            else:
                return self._store(inp, response, looked_up)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncContractShieldClient(_BaseClient[AsyncTransport]):
    """asyncio client with the same options and behaviour as ``ContractShieldClient``.

    Callbacks are plain (non-async) callables, called on the event loop.
    """

    _builtin = {"grpc": AsyncGrpcTransport, "http": AsyncHttpTransport}

    async def evaluate(
        self,
        method: str,
        path: str,
        *,
        headers: HeadersInput = None,
        body: bytes | None = None,
        identity: IdentityInput = None,
        client_ip: str | None = None,
        host: str | None = None,
        scheme: str | None = None,
        context_extensions: Mapping[str, str] | None = None,
    ) -> Decision:
        """Same contract as ``ContractShieldClient.evaluate``."""
        inp = describe(
            method,
            path,
            headers=headers,
            body=body,
            identity=identity,
            client_ip=client_ip,
            host=host,
            scheme=scheme,
            context_extensions=context_extensions,
        )
        return await self.evaluate_input(inp)

    async def evaluate_input(self, inp: CheckInput) -> Decision:
        """Decide a request already described with ``describe`` (used by the middleware)."""
        prepared = self._prepare(inp)
        if isinstance(prepared, Decision):
            return prepared  # a cache hit
        request, looked_up = prepared
        attempt = 0
        while True:
            try:
                response = await self._transport.check(request, self._timeout)
            except Exception as exc:
                after = self._after_failure(exc, attempt)
                if isinstance(after, Decision):
                    return after
                await asyncio.sleep(after)
                attempt += 1
            else:
                return self._store(inp, response, looked_up)

    async def aclose(self) -> None:
        await self._transport.close()

    close = aclose

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
