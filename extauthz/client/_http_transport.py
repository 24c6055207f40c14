"""HTTP transports: the same ``Check`` as gRPC, as ``POST /v1/check`` (protobuf bytes both ways).

The server answers ``/v1/check`` with the gRPC servicer's own code, so decisions, dynamic
metadata, cache hints and policy versions are the same bytes as over gRPC: the client's cache,
retries and failover need no second mapping. Targets: ``http://host:port``,
``https://host:port`` (the server's ``TLS_CERT_FILE`` on ``HTTP_PORT``; ``TlsOptions`` as for
gRPC, the system roots without it) or ``http+unix:///path/http.sock`` (``HTTP_UNIX_SOCKET``).

Built on the standard library (sockets for the blocking client, asyncio streams for the
async one), chosen by measurement (``bench/client_bench.py``, docs/client.md): one request is
a write and a read on a kept-alive connection, and every layer a library adds (urllib3's pool,
httpx's request model) is per-call cost at this size. Connections are pooled per client (LIFO,
reused while the server keeps them alive); one that the server closed while idle fails before
any answer and is retried once at once on a new connection (the request never reached the
server); any other failure is mapped to the client's errors like gRPC's:

- ``ContractShieldTimeout``     no answer within the attempt's deadline (retryable)
- ``ContractShieldUnavailable`` nothing listening, the connection dropped, or the TLS
                                handshake failed (retryable, as gRPC's UNAVAILABLE for the same)
- ``OperationalError``          an answer that is not a check response (not retryable)

Over ``https://`` a pooled connection keeps its TLS session, so the handshake is paid once per
connection, not per check.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from google.protobuf.message import DecodeError

from .._exceptions import (
    ContractShieldTimeout,
    ContractShieldUnavailable,
    InvalidConfig,
    OperationalError,
)
from ._tls import TlsOptions

CHECK_PATH = "/v1/check"
PROTOBUF = "application/x-protobuf"
POOL_SIZE = 16  # idle connections kept per client


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """Where the PDP's HTTP API listens: a Unix socket path, or host and port (``https``:
    over TLS)."""

    url: str
    socket_path: str | None = None
    host: str = "localhost"
    port: int = 80
    https: bool = False


_EXPECTED = "expected 'http://host:port', 'https://host:port' or 'http+unix:///path.sock'"


def parse_http_target(target: str) -> HttpTarget:
    """``http://host:port``, ``https://host:port``, ``http+unix:///path.sock`` or (with
    ``transport="http"``) ``unix:///path.sock``; ``InvalidConfig`` otherwise."""
    if not isinstance(target, str) or not target.strip():
        raise InvalidConfig(f"target: {_EXPECTED}")
    text = target.strip()
    for prefix in ("http+unix://", "unix://", "unix:"):
        if text.startswith(prefix):
            path = text[len(prefix) :]
            if not path.startswith("/") or path == "/":
                raise InvalidConfig(f"target {target!r}: expected an absolute socket path")
            return HttpTarget(text, socket_path=path)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidConfig(f"target {target!r}: {_EXPECTED}")
    if parts.path not in ("", "/"):
        raise InvalidConfig(f"target {target!r}: no path expected (the client posts {CHECK_PATH})")
    https = parts.scheme == "https"
    try:
        port = parts.port or (443 if https else 80)
    except ValueError as exc:
        raise InvalidConfig(f"target {target!r}: bad port") from exc
    return HttpTarget(text, host=parts.hostname, port=port, https=https)


def is_http_target(target: str) -> bool:
    return isinstance(target, str) and target.strip().startswith(
        ("http://", "https://", "http+unix://")
    )


@dataclass(frozen=True, slots=True)
class _Tls:
    """What an ``https://`` connection is wrapped with: one context per transport."""

    context: ssl.SSLContext
    server_hostname: str


def _tls_for(target: HttpTarget, tls: TlsOptions | None) -> _Tls | None:
    """The TLS of an ``https://`` target (``tls`` or the system roots); refuses ``tls`` for a
    plaintext one rather than silently sending in the clear what was meant to be protected."""
    if not target.https:
        if tls is not None:
            kind = "a Unix socket" if target.socket_path else "an http:// URL"
            raise InvalidConfig(
                f"target {target.url!r}: tls needs an https:// target; {kind} is plaintext"
            )
        return None
    options = tls if tls is not None else TlsOptions()
    return _Tls(options.ssl_context(), options.server_hostname(target.host))


# The PDP's TLS listener refuses a client certificate by closing the connection, with no alert
# (TLS 1.3: after the client's side of the handshake; 1.2: during it), so the client cannot
# tell that from any other close; the message names the likely cause.
CLOSED_OVER_TLS = (
    "TLS: closed before any answer; a PDP with TLS_CLIENT_CA_FILE does so for a client "
    "without a certificate it trusts (tls.cert_file)"
)


def _reason(exc: OSError) -> str:
    """Why a connection failed, for the message: a TLS failure says what TLS refused."""
    if isinstance(exc, ssl.SSLEOFError):
        return CLOSED_OVER_TLS
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    return str(exc.strerror or exc) or type(exc).__name__


def _decode(status: int, content_type: str | None, body: bytes, url: str) -> CheckResponse:
    if status != 200 or not (content_type or "").startswith(PROTOBUF):
        text = body[:200].decode("utf-8", "replace")
        if status == 503:
            raise ContractShieldUnavailable(f"PDP at {url} is unavailable (HTTP 503: {text})")
        raise OperationalError(f"PDP at {url} refused the check (HTTP {status}: {text})")
    try:
        return CheckResponse.FromString(body)
    except DecodeError as exc:
        raise OperationalError(f"PDP at {url} sent a body that is not a CheckResponse") from exc


def _closed_unanswered(exc: BaseException) -> bool:
    """A close (an EOF, or a reset when the request reached an already closed socket) before
    any byte of the answer."""
    if isinstance(exc, asyncio.IncompleteReadError):
        return not exc.partial
    return isinstance(exc, ConnectionResetError | BrokenPipeError)


# How a TLS connection says "closed" (an EOF without close_notify, or a close_notify): as an EOF
# or a reset on a plain connection, so a pooled one the server closed is retried the same way.
_TLS_CLOSED = (ssl.SSLEOFError, ssl.SSLZeroReturnError)


class _Dropped(Exception):
    """The connection closed; ``answered`` is False when no byte of the answer had arrived."""

    def __init__(self, answered: bool) -> None:
        super().__init__("connection closed by the server")
        self.answered = answered


class _HttpTarget:
    """What both HTTP transports hold: the parsed target, its TLS, and the request head every
    check starts with (only the length and the body vary)."""

    def __init__(self, target: str, *, tls: TlsOptions | None = None) -> None:
        self._target = parse_http_target(target)
        self.target = self._target.url
        self._tls = _tls_for(self._target, tls)
        self._closed = False
        t = self._target
        host = "localhost" if t.socket_path else f"{t.host}:{t.port}"
        self._head = (
            f"POST {CHECK_PATH} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {PROTOBUF}\r\n"
            "content-length: "
        ).encode()

    def _message(self, request: CheckRequest) -> bytes:
        if self._closed:
            raise ContractShieldUnavailable(f"transport to {self.target} is closed")
        body = request.SerializeToString()
        return b"%s%d\r\n\r\n%s" % (self._head, len(body), body)


class HttpTransport(_HttpTarget):
    """Blocking HTTP transport; thread-safe, a small pool of kept-alive sockets.

    The request is one ``sendall`` and the answer (our server always sends ``content-length``)
    is read with ``recv`` and split by hand: ``http.client`` parses response headers with the
    ``email`` package, a fifth of a whole check's client-side cost here.
    """

    def __init__(self, target: str, *, tls: TlsOptions | None = None) -> None:
        super().__init__(target, tls=tls)
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()

    def _connect(self, timeout: float) -> socket.socket:
        t = self._target
        if t.socket_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(t.socket_path)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = socket.create_connection((t.host, t.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is None:
            return sock
        try:  # the handshake, under the same timeout
            return self._tls.context.wrap_socket(sock, server_hostname=self._tls.server_hostname)
        except BaseException:
            sock.close()
            raise

    def check(self, request: CheckRequest, timeout: float) -> CheckResponse:
        message = self._message(request)
        with self._lock:
            sock = self._idle.pop() if self._idle else None
        reused = sock is not None
        while True:
            try:
                if sock is None:
                    sock = self._connect(timeout)
                status, content_type, data, keep = _exchange(sock, message, timeout)
                break
            except (_Dropped, ConnectionResetError, BrokenPipeError, *_TLS_CLOSED) as exc:
                if sock is not None:
                    sock.close()
                answered = isinstance(exc, _Dropped) and exc.answered
                if not reused or answered:
                    why = f" ({CLOSED_OVER_TLS})" if self._tls and not answered else ""
                    raise ContractShieldUnavailable(
                        f"PDP at {self.target} dropped the connection{why}"
                    ) from exc
                reused, sock = False, None  # the server closed an idle one: once more, anew
            except TimeoutError as exc:
                if sock is not None:
                    sock.close()
                raise ContractShieldTimeout(f"PDP at {self.target} did not answer in time") from exc
            except OSError as exc:  # ssl.SSLError too: a refused handshake is "unreachable"
                if sock is not None:
                    sock.close()
                raise ContractShieldUnavailable(
                    f"PDP at {self.target} is unavailable ({_reason(exc)})"
                ) from exc
            except ValueError as exc:
                sock.close()  # type: ignore[union-attr]
                raise ContractShieldUnavailable(
                    f"PDP at {self.target} sent a broken answer ({exc})"
                ) from exc
        self._release(sock, keep)
        return _decode(status, content_type, data, self.target)

    def _release(self, sock: socket.socket, keep: bool) -> None:
        if keep:
            with self._lock:
                if not self._closed and len(self._idle) < POOL_SIZE:
                    self._idle.append(sock)
                    return
        sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()


def _exchange(
    sock: socket.socket, message: bytes, timeout: float
) -> tuple[int, str | None, bytes, bool]:
    """Send one request, read one ``content-length`` answer: (status, type, body, keep)."""
    sock.settimeout(timeout)
    sock.sendall(message)
    buf = sock.recv(65536)
    if not buf:
        raise _Dropped(answered=False)
    end = buf.find(b"\r\n\r\n")
    while end < 0:
        if len(buf) > MAX_HEAD_BYTES:
            raise ValueError("answer head too large")
        chunk = sock.recv(65536)
        if not chunk:
            raise _Dropped(answered=True)
        buf += chunk
        end = buf.find(b"\r\n\r\n")
    status, content_type, length, keep = _parse_head(buf[:end])
    data = buf[end + 4 :]
    while len(data) < length:
        chunk = sock.recv(max(65536, length - len(data)))
        if not chunk:
            raise _Dropped(answered=True)
        data += chunk
    if len(data) > length:  # bytes we never asked for: this connection is not reusable
        keep = False
        data = data[:length]
    return status, content_type, data, keep


MAX_HEAD_BYTES = 64 * 1024


def _parse_head(head: bytes) -> tuple[int, str | None, int, bool]:
    """Status line and headers of an answer: (status, content-type, content-length, keep)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "")
    if not length.isdigit():
        raise ValueError("answer without a content-length")
    keep = headers.get("connection", "").lower() != "close"
    return int(parts[1]), headers.get("content-type"), int(length), keep


_Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class AsyncHttpTransport(_HttpTarget):
    """asyncio HTTP transport on asyncio streams; a pool per event loop (as the gRPC one)."""

    def __init__(self, target: str, *, tls: TlsOptions | None = None) -> None:
        super().__init__(target, tls=tls)
        self._idle: list[_Stream] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _open(self) -> _Stream:
        t = self._target
        if t.socket_path is not None:
            return await asyncio.open_unix_connection(t.socket_path)
        if self._tls is None:
            return await asyncio.open_connection(t.host, t.port)
        return await asyncio.open_connection(
            t.host, t.port, ssl=self._tls.context, server_hostname=self._tls.server_hostname
        )

    async def check(self, request: CheckRequest, timeout: float) -> CheckResponse:
        message = self._message(request)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # streams belong to one loop
            self._loop, self._idle = loop, []
        try:
            async with asyncio.timeout(timeout):
                status, content_type, data = await self._send(message)
        except TimeoutError as exc:
            raise ContractShieldTimeout(f"PDP at {self.target} did not answer in time") from exc
        return _decode(status, content_type, data, self.target)

    async def _send(self, message: bytes) -> tuple[int, str | None, bytes]:
        stream = self._idle.pop() if self._idle else None
        reused = stream is not None
        while True:
            if stream is None:
                try:
                    stream = await self._open()
                except OSError as exc:  # ssl.SSLError too: a refused handshake
                    why = _reason(exc)
                    if self._tls and isinstance(exc, ConnectionResetError):
                        why = CLOSED_OVER_TLS  # asyncio's word for a close mid-handshake
                    raise ContractShieldUnavailable(
                        f"PDP at {self.target} is unavailable ({why})"
                    ) from exc
            reader, writer = stream
            try:
                writer.write(message)
                answer = await _read_answer(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                writer.close()
                if reused and isinstance(exc, OSError | asyncio.IncompleteReadError):
                    reused, stream = False, None  # an idle connection the server closed
                    continue
                why = repr(exc)
                if isinstance(exc, ssl.SSLError):
                    why = _reason(exc)
                elif self._tls and _closed_unanswered(exc):
                    why = CLOSED_OVER_TLS
                raise ContractShieldUnavailable(
                    f"PDP at {self.target} dropped the connection ({why})"
                ) from exc
            except BaseException:  # a timeout or cancellation mid-answer: the stream is unusable
                writer.close()
                raise
            status, content_type, data, keep = answer
            if keep and not self._closed and len(self._idle) < POOL_SIZE:
                self._idle.append(stream)
            else:
                writer.close()
            return status, content_type, data

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, str | None, bytes, bool]:
    """One HTTP/1.1 answer with a ``content-length`` body (what our server always sends)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status, content_type, length, keep = _parse_head(head[:-4])
    data = await reader.readexactly(length) if length else b""
    return status, content_type, data, keep
