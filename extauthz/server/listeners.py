"""The addresses the server answers on, one small object each (aiohttp's sites)::

    H2UnixListener     gRPC on UNIX_SOCKET (sidecar), the builtin gRPC server (GRPC_TRANSPORT)
    H2TcpListener      gRPC on GRPC_HOST:GRPC_PORT, plain, the builtin gRPC server
    GrpcUnixListener   gRPC on UNIX_SOCKET, grpcio (GRPC_TRANSPORT=grpcio)
    GrpcTcpListener    gRPC on GRPC_HOST:GRPC_PORT, plain or TLS, grpcio
    HttpTcpListener    HTTP on HTTP_HOST:HTTP_PORT, plain or TLS, re-opened on new TLS files
    HttpUnixListener   HTTP on HTTP_UNIX_SOCKET

A listener binds one address of a transport it is given (the ``H2GrpcServer`` or the
``grpc.aio.Server``, the ``HttpServer``), owns what comes with the address (a Unix socket file's hygiene, the TLS
watch), refuses an address it cannot bind with ``InvalidConfig`` naming its setting, and
stops. ``Server`` starts the gRPC ones, then the gRPC server (grpcio serves only what was
bound before it starts), then the HTTP ones (an HTTP port that answers means gRPC is serving);
it stops them after the gRPC server has drained, and the HTTP server drains its connections
after its listeners have stopped accepting. A new kind of address is a class here and its
line in ``listeners_for``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from .._exceptions import InvalidConfig
from .socket import SocketFile
from .tasks import cancel_and_wait

if TYPE_CHECKING:
    import grpc

    from .config import ServerConfig
    from .h2_server import H2GrpcServer
    from .http_server import HttpServer
    from .tls import TlsReloader

log = logging.getLogger("extauthz.server")


class UnixServing(Protocol):
    """What a Unix socket listener needs of its server."""

    async def listen_unix(self, path: str) -> None: ...

    def stop_listening(self, address: int | str) -> None: ...


TLS_WATCH_SECONDS = 1.0  # how often the HTTP listener looks for new TLS files


class Listener(ABC):
    """One address: ``start`` binds it, ``stop`` stops accepting and gives the address back."""

    setting: ClassVar[str]  # the setting an error names
    transport: ClassVar[Literal["grpc", "http"]]  # grpc: served once the gRPC server starts
    port: int | None = None  # the bound TCP port (TCP listeners)

    @abstractmethod
    async def start(self) -> None:
        """Bind; ``InvalidConfig`` (or ``SocketInUse``) when the address cannot be had."""

    async def stop(self) -> None:
        """Stop accepting (where the transport can stop one address) and ``release``."""
        self.release()

    def release(self) -> None:
        """Remove what ``start`` left on disk; idempotent, safe in a signal handler."""
        return None  # a TCP address leaves nothing on disk

    @abstractmethod
    def describe(self) -> str:
        """The address for the start-up log line."""


def _tls_mode(tls: TlsReloader | None) -> str:
    if tls is None:
        return ""
    return " (mtls)" if tls.files.mutual else " (tls)"


class _LoopUnixListener(Listener):
    """A Unix socket served by one of our servers on the event loop (the built-in gRPC
    server, the HTTP server: both ``listen_unix`` and ``stop_listening``)."""

    scheme: ClassVar[str]  # for ``describe``

    def __init__(self, server: UnixServing, path: str, mode: int) -> None:
        self.server = server
        self.file = SocketFile(path, mode, self.setting)

    async def start(self) -> None:
        path = self.file.path
        self.file.prepare()
        with self.file.umask():  # no window with a looser mode
            try:
                await self.server.listen_unix(path)
            except OSError as exc:
                raise InvalidConfig(
                    f"{self.setting}: cannot bind {path}: {exc.strerror or exc}"
                ) from exc
        self.file.bound()

    async def stop(self) -> None:
        self.server.stop_listening(self.file.path)  # the server drains its connections
        self.release()

    def release(self) -> None:
        self.file.remove()

    def describe(self) -> str:
        return f"{self.scheme} unix:{self.file.path}"


class H2UnixListener(_LoopUnixListener):
    transport = "grpc"
    setting = "UNIX_SOCKET"
    scheme = "grpc"


class H2TcpListener(Listener):
    transport = "grpc"
    setting = "GRPC_PORT"

    def __init__(self, server: H2GrpcServer, host: str, port: int, *, reuse_port: bool) -> None:
        self.server, self.host, self.wanted, self.reuse_port = server, host, port, reuse_port

    async def start(self) -> None:
        try:
            self.port = await self.server.listen_tcp(
                self.host, self.wanted, reuse_port=self.reuse_port
            )
        except OSError as exc:
            raise InvalidConfig(
                f"{self.setting}: cannot bind {self.host}:{self.wanted} ({exc.strerror or exc})"
            ) from exc

    async def stop(self) -> None:
        if self.port is not None:
            self.server.stop_listening(self.port)

    def describe(self) -> str:
        return f"grpc {self.host}:{self.port}"


class GrpcUnixListener(Listener):
    transport = "grpc"
    setting = "UNIX_SOCKET"

    def __init__(self, server: grpc.aio.Server, path: str, mode: int) -> None:
        self.server = server
        self.file = SocketFile(path, mode, self.setting)

    async def start(self) -> None:
        path = self.file.prepare()
        with self.file.umask():  # no window with a looser mode
            try:
                self.server.add_insecure_port(f"unix:{path}")  # grpcio creates the file here
            except RuntimeError as exc:
                raise InvalidConfig(f"{self.setting}: cannot bind {path}") from exc
        self.file.bound()

    def release(self) -> None:
        self.file.remove()

    def describe(self) -> str:
        return f"grpc unix:{self.file.path}"


class GrpcTcpListener(Listener):
    transport = "grpc"
    setting = "GRPC_PORT"

    def __init__(
        self, server: grpc.aio.Server, host: str, port: int, tls: TlsReloader | None
    ) -> None:
        self.server, self.host, self.wanted, self.tls = server, host, port, tls

    async def start(self) -> None:
        address = f"{self.host}:{self.wanted}"
        try:
            if self.tls is not None:
                self.port = self.server.add_secure_port(address, self.tls.grpc_credentials())
            else:
                self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise InvalidConfig(
                f"{self.setting}: cannot bind {address} (in use, or not a local address)"
            ) from exc

    def describe(self) -> str:
        return f"grpc {self.host}:{self.port}{_tls_mode(self.tls)}"


class HttpTcpListener(Listener):
    """TLS files change without a restart: a watcher re-opens the listening socket with a new
    context. An ``SSLContext`` can gain a CA but never lose one, so a new context (and a new
    listening socket on the same port) is the only way a removed client CA stops being
    trusted. Open connections keep their old session; new ones get the new files."""

    transport = "http"
    setting = "HTTP_PORT"

    def __init__(
        self,
        http: HttpServer,
        host: str,
        port: int,
        *,
        reuse_port: bool,
        tls: TlsReloader | None,
    ) -> None:
        self.http, self.host, self.wanted = http, host, port
        self.reuse_port, self.tls = reuse_port, tls
        self._generation = 0  # of the TLS files the listening socket has
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        tls = self.tls
        try:
            self.port = await self._open(self.wanted, tls.ssl_context() if tls else None)
        except OSError as exc:
            raise InvalidConfig(
                f"{self.setting}: cannot listen on {self.host}:{self.wanted}: {exc.strerror or exc}"
            ) from exc
        if tls is not None:
            self._generation = tls.generation
            self._watch = asyncio.get_running_loop().create_task(self._watch_tls(tls))

    async def _open(self, port: int, context: ssl.SSLContext | None) -> int:
        return await self.http.listen_tcp(
            self.host, port, reuse_port=self.reuse_port, ssl_context=context
        )

    async def stop(self) -> None:
        await cancel_and_wait(self._watch)
        self._watch = None
        if self.port is not None:
            self.http.stop_listening(self.port)  # the HTTP server drains its connections

    async def _watch_tls(self, tls: TlsReloader) -> None:
        while True:
            await asyncio.sleep(TLS_WATCH_SECONDS)
            tls.refresh()
            if tls.generation == self._generation or self.port is None:
                continue
            try:
                context = tls.ssl_context()
            except (OSError, ssl.SSLError) as exc:
                log.error("HTTP listener keeps its TLS files: %s", exc)
                continue
            self.http.stop_listening(self.port)
            try:
                await self._open(self.port, context)
            except OSError as exc:  # the port was taken in between: try again next round
                log.error("HTTP listener could not re-open on port %s: %s", self.port, exc)
                continue
            self._generation = tls.generation
            log.info("HTTP listener re-opened with the new TLS files")

    def describe(self) -> str:
        return f"http {self.host}:{self.port}{_tls_mode(self.tls)}"


class HttpUnixListener(_LoopUnixListener):
    transport = "http"
    setting = "HTTP_UNIX_SOCKET"
    scheme = "http"


def listeners_for(
    config: ServerConfig,
    *,
    grpc_server: grpc.aio.Server | H2GrpcServer,
    http: HttpServer | None,
    tls: TlsReloader | None,
    shared_ports: bool,
) -> list[Listener]:
    """The configured addresses, gRPC first. ``shared_ports``: a worker's TCP ports are
    shared with its siblings (SO_REUSEPORT; grpcio sets it for its own ports)."""
    from .h2_server import H2GrpcServer

    found: list[Listener] = []
    if isinstance(grpc_server, H2GrpcServer):
        if config.unix_socket:
            found.append(H2UnixListener(grpc_server, config.unix_socket, config.socket_mode))
        if config.grpc_port:
            found.append(
                H2TcpListener(
                    grpc_server, config.grpc_host, config.grpc_port, reuse_port=shared_ports
                )
            )
    else:
        if config.unix_socket:
            found.append(GrpcUnixListener(grpc_server, config.unix_socket, config.socket_mode))
        if config.grpc_port:
            found.append(GrpcTcpListener(grpc_server, config.grpc_host, config.grpc_port, tls))
    if http is not None and config.http_port:
        http_tls = tls if config.http_tls else None
        found.append(
            HttpTcpListener(
                http, config.http_host, config.http_port, reuse_port=shared_ports, tls=http_tls
            )
        )
    if http is not None and config.http_unix_socket:
        found.append(HttpUnixListener(http, config.http_unix_socket, config.socket_mode))
    return found
