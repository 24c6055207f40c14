"""Transports: how one ext_authz ``Check`` reaches a PDP (httpx-style, pluggable).

A transport only moves a ``CheckRequest`` and a ``CheckResponse``; caching, retries and
failover live in the client and wrap any transport. Errors are mapped at this boundary:

- ``ContractShieldTimeout``     no answer within the attempt's deadline (retryable)
- ``ContractShieldUnavailable`` the PDP could not be reached (retryable)
- ``OperationalError``          the PDP was reached but refused the call, e.g. UNIMPLEMENTED
                                (not retryable: asking again gives the same refusal)
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Protocol, runtime_checkable

import grpc
import grpc.aio
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from .._exceptions import (
    ContractShieldTimeout,
    ContractShieldUnavailable,
    InvalidConfig,
    OperationalError,
)
from ._tls import TlsOptions

CHECK_METHOD = "/envoy.service.auth.v3.Authorization/Check"
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
RECONNECT_MAX_MS = 500
# Codes that mean "nobody answered": asking again may succeed.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})


@runtime_checkable
class Transport(Protocol):
    """Sends one ``Check``; ``timeout`` is this attempt's own deadline in seconds."""

    def check(self, request: CheckRequest, timeout: float) -> CheckResponse: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncTransport(Protocol):
    async def check(self, request: CheckRequest, timeout: float) -> CheckResponse: ...

    async def close(self) -> None: ...


def normalize_target(target: str) -> str:
    """Accept ``unix:///abs/path.sock``, ``unix:relative.sock`` or ``host:port``."""
    if not isinstance(target, str) or not target.strip():
        raise InvalidConfig("target: expected 'unix:///path/pdp.sock' or 'host:port'")
    target = target.strip()
    if target.startswith("unix:"):
        if target in ("unix:", "unix://", "unix:///"):
            raise InvalidConfig(f"target {target!r}: the Unix socket path is missing")
        return target
    if target.startswith("/"):
        return f"unix://{target}"
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidConfig(f"target {target!r}: expected 'unix:///path/pdp.sock' or 'host:port'")
    return target


def _channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Calls fail fast while the PDP is down (no wait_for_ready); the channel retries the
        # connection in the background, so answers resume at most RECONNECT_MAX_MS after the
        # PDP is back.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_MAX_MS),
        ("grpc.enable_retries", 0),
    ]


def _tls_for(target: str, tls: TlsOptions | None) -> TlsOptions | None:
    if tls is not None and target.startswith("unix:"):
        raise InvalidConfig(f"target {target!r}: TLS is for a TCP target; a Unix socket is plain")
    return tls


def map_rpc_error(exc: grpc.RpcError, target: str) -> OperationalError:
    """One place turning a gRPC failure into the package's error hierarchy."""
    code = exc.code() if isinstance(exc, grpc.Call | grpc.aio.AioRpcError) else None
    details = exc.details() if isinstance(exc, grpc.Call | grpc.aio.AioRpcError) else str(exc)
    name = code.name if code is not None else "UNKNOWN"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ContractShieldTimeout(f"PDP at {target} did not answer in time")
    if code in RETRYABLE_CODES:
        return ContractShieldUnavailable(f"PDP at {target} is unavailable ({name}: {details})")
    return OperationalError(f"PDP at {target} refused the check ({name}: {details})")


class _GrpcTarget:
    """What both gRPC transports hold: the target, its TLS (credentials read once, at
    construction) and how a channel to it is opened."""

    def __init__(
        self,
        target: str,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        tls: TlsOptions | None = None,
    ) -> None:
        self.target = normalize_target(target)
        self.tls = _tls_for(self.target, tls)
        self._credentials = self.tls.credentials() if self.tls is not None else None
        self._max_message_bytes = max_message_bytes
        self._closed = False
        self._setup()

    def _setup(self) -> None:
        """What a transport opens at construction (the blocking one: its channel)."""

    def _open(self, api: Any) -> tuple[Any, Any]:
        """A channel from ``api`` (``grpc`` or ``grpc.aio``) and its ``Check`` callable."""
        options: list[tuple[str, Any]] = [*_channel_options(self._max_message_bytes)]
        if self.tls is None or self._credentials is None:
            channel = api.insecure_channel(self.target, options=options)
        else:
            options += self.tls.channel_options()
            channel = api.secure_channel(self.target, self._credentials, options)
        check = channel.unary_unary(
            CHECK_METHOD,
            request_serializer=CheckRequest.SerializeToString,
            response_deserializer=CheckResponse.FromString,
        )
        return channel, check


class GrpcTransport(_GrpcTarget):
    """Blocking ext_authz v3 transport; one channel, created once, shared by all threads."""

    _channel: grpc.Channel
    _check: grpc.UnaryUnaryMultiCallable

    def _setup(self) -> None:
        self._channel, self._check = self._open(grpc)
        self._lock = threading.Lock()

    def check(self, request: CheckRequest, timeout: float) -> CheckResponse:
        try:
            return self._check(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise map_rpc_error(exc, self.target) from exc
        except ValueError as exc:  # grpc raises ValueError on a closed channel
            raise ContractShieldUnavailable(f"transport to {self.target} is closed") from exc

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._channel.close()


class AsyncGrpcTransport(_GrpcTarget):
    """asyncio ext_authz v3 transport; the channel is created on first use, in the running
    loop, and reused afterwards. A grpc.aio channel belongs to one event loop, so a call from
    another loop (a test client starting a loop per request) gets a channel of its own."""

    _channel: grpc.aio.Channel | None = None
    _check: grpc.aio.UnaryUnaryMultiCallable | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def _stub(self) -> grpc.aio.UnaryUnaryMultiCallable:
        if self._closed:
            raise ContractShieldUnavailable(f"transport to {self.target} is closed")
        loop = asyncio.get_running_loop()
        if self._check is None or self._loop is not loop:
            self._loop = loop
            self._channel, self._check = self._open(grpc.aio)
        return self._check

    async def check(self, request: CheckRequest, timeout: float) -> CheckResponse:
        stub = self._stub()
        try:
            return await stub(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise map_rpc_error(exc, self.target) from exc

    async def close(self) -> None:
        self._closed = True
        channel, self._channel, self._check = self._channel, None, None
        if channel is not None:
            await channel.close()
