"""The HTTP/1.1 server machinery: an ``asyncio.Protocol`` on the ``httptools`` (llhttp) parser.

It knows nothing of what a path does: it parses requests into ``HttpIn``, hands each to a
handler (``HttpIn -> HttpOut``, or an awaitable of it when the answer has to wait) and writes
``HttpOut`` back. What it guarantees, whatever the handler:

- keep-alive (HTTP/1.1 by default, HTTP/1.0 on request) and pipelining: answers leave in the
  order the requests came, a later request waits for an earlier slow one;
- ``Expect: 100-continue`` is answered before the body is read;
- limits: a body above ``max_body_bytes`` is 413 (from ``content-length`` before reading it,
  or as soon as a chunked body passes it), a head above ``max_header_bytes`` is 431, bytes
  that are not HTTP are 400; each of these closes the connection;
- idle keep-alive connections are closed after ``keepalive_timeout`` seconds; ``close()``
  stops accepting, closes idle connections and lets the busy ones finish their answer.

Chosen by measurement over aiohttp's low-level ``web.Server`` (docs/deployment.md, "HTTP
server"): no request/response objects, no task per request (a handler answering at once is
written from ``data_received``), one ``transport.write`` per answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

import httptools

from .._http import HttpIn, HttpOut
from .tasks import cancel_and_wait

log = logging.getLogger("extauthz.server")

DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_KEEPALIVE_TIMEOUT = 75.0  # aiohttp's default, kept: Envoy's cluster idles out first
MAX_PIPELINED = 64  # queued requests per connection before reading pauses


Handler = Callable[[HttpIn], "HttpOut | Awaitable[HttpOut]"]

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {
    code: f"HTTP/1.1 {code} {phrase}\r\n".encode() for code, phrase in _REASONS.items()
}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else f"HTTP/1.1 {status} Unknown\r\n".encode()


class _Date:
    """The ``Date`` header, formatted once a second."""

    __slots__ = ("line", "second")

    def __init__(self) -> None:
        self.second = -1
        self.line = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.line = f"date: {formatdate(now, usegmt=True)}\r\n".encode()
        return self.line


_DATE = _Date()
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def serialize(out: HttpOut, *, keep_alive: bool, head: bool = False) -> bytes:
    """The answer's bytes: status line, headers, ``content-length``, body (none for HEAD).

    Hot (every answer): ``serialize_plain``'s bytes (the tests pin them equal) with the
    headers encoded in one call and the content-type and length lines cached, ~9k instead
    of ~13k instructions for a check's answer (``bench/door_instructions.py``).
    """
    status = out.status
    ctype = out.content_type
    headers = out.headers
    length = len(out.body)
    return b"".join(
        (
            _STATUS_LINES.get(status) or _status_line(status),
            _DATE.get(),
            (_CONTENT_TYPE_LINES.get(ctype) or _content_type_line(ctype)) if ctype else b"",
            "".join([f"{name}: {value}\r\n" for name, value in headers]).encode("utf-8", "replace")
            if headers
            else b"",
            _LENGTH_LINES.get(length) or _length_line(length),
            b"\r\n" if keep_alive else b"connection: close\r\n\r\n",
            b"" if head else out.body,
        )
    )


_CONTENT_TYPE_LINES: dict[str, bytes] = {}
_LENGTH_LINES: dict[int, bytes] = {}
_LINES_CACHED = 256  # per cache: a few content types, the lengths of repeated answers


def _content_type_line(ctype: str) -> bytes:
    line = b"content-type: " + ctype.encode() + b"\r\n"
    if len(_CONTENT_TYPE_LINES) < _LINES_CACHED:
        _CONTENT_TYPE_LINES[ctype] = line
    return line


def _length_line(length: int) -> bytes:
    line = b"content-length: %d\r\n" % length
    if len(_LENGTH_LINES) < _LINES_CACHED:
        _LENGTH_LINES[length] = line
    return line


def serialize_plain(out: HttpOut, *, keep_alive: bool, head: bool = False) -> bytes:
    """The reference ``serialize``: one part per line."""
    parts = [_status_line(out.status), _DATE.get()]
    if out.content_type:
        parts.append(b"content-type: " + out.content_type.encode() + b"\r\n")
    for name, value in out.headers:
        parts.append(f"{name}: {value}\r\n".encode(errors="replace"))
    parts.append(b"content-length: %d\r\n" % len(out.body))
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    if not head:
        parts.append(out.body)
    return b"".join(parts)


#: Raw header name -> ``header_name``: bounded, it starts again when full (a client can send
#: any names). A hit is one hash of a short bytes object instead of a decode and a lower-case,
#: ~500 instructions a header (``bench/door_instructions.py``).
_HEADER_NAMES: dict[bytes, str] = {}
HEADER_NAMES_CACHED = 512


def header_name(raw: bytes) -> str:
    """A header name as ``HttpIn`` keys it: latin-1, lower-cased (kept in ``_HEADER_NAMES``)."""
    name = raw.decode("latin-1").lower()
    if len(_HEADER_NAMES) >= HEADER_NAMES_CACHED:
        _HEADER_NAMES.clear()
    _HEADER_NAMES[raw] = name
    return name


def _error(status: int, message: str) -> HttpOut:
    body = json.dumps({"error": message, "code": "INVALID_REQUEST"}).encode()
    return HttpOut(status, body, "application/json")


@dataclass(slots=True)
class HttpServer:
    """The listeners and connections of one handler; ``listen_*`` may be called several times."""

    handler: Handler
    max_body_bytes: int
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    servers: list[asyncio.Server] = field(default_factory=list)
    connections: set[_Connection] = field(default_factory=set)
    _sweeper: asyncio.Task[None] | None = None

    def _factory(self) -> _Connection:
        return _Connection(self)

    async def listen_tcp(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> int:
        """Listen on ``host:port`` (0: any free port), TLS with ``ssl_context``; the bound port.
        ``reuse_port``: shared with the other workers of a supervisor (``workers``)."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            self._factory, host, port, reuse_port=reuse_port, backlog=1024, ssl=ssl_context
        )
        self.servers.append(server)
        self._start_sweeper()
        return int(server.sockets[0].getsockname()[1])

    async def listen_unix(self, path: str) -> None:
        """Listen on a Unix socket the caller has prepared (see ``server.socket``)."""
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(self._factory, path, backlog=1024)
        self.servers.append(server)
        self._start_sweeper()

    def stop_listening(self, address: int | str) -> None:
        """Stop accepting on one TCP port or Unix socket path (its listener stops, or re-opens
        it on new TLS files); the connections it accepted stay until ``close``."""
        for server in [s for s in self.servers if _address(s) == address]:
            server.close()
            self.servers.remove(server)

    def _start_sweeper(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Close keep-alive connections idle for longer than the timeout (one timer, not one
        per connection)."""
        period = max(0.05, min(self.keepalive_timeout / 4, 10.0))
        while True:
            await asyncio.sleep(period)
            deadline = time.monotonic() - self.keepalive_timeout
            for conn in list(self.connections):
                if conn.idle and conn.last_seen < deadline:
                    conn.close()

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting, close idle connections, give busy ones ``grace`` seconds, close all."""
        for server in self.servers:
            server.close()
        await cancel_and_wait(self._sweeper)
        self._sweeper = None
        deadline = time.monotonic() + grace
        while True:
            for conn in list(self.connections):
                if conn.idle:
                    conn.close()
                else:
                    conn.closing = True  # closed after its current answer
            if not self.connections or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self.servers.clear()


def _address(server: asyncio.Server) -> int | str | None:
    """A listening server's TCP port or Unix socket path."""
    if not server.sockets:
        return None
    name = server.sockets[0].getsockname()
    return int(name[1]) if isinstance(name, tuple) else str(name)


class _Connection(asyncio.Protocol):
    """One client connection: parser callbacks build requests, answers go out in order."""

    __slots__ = (
        "_body",
        "_body_size",
        "_head_size",
        "_headers",
        "_parser",
        "_paused",
        "_queue",
        "_raw_headers",
        "_refusal",
        "_task",
        "_url",
        "busy",
        "closing",
        "last_seen",
        "peer",
        "refused",
        "server",
        "transport",
    )

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[tuple[HttpIn, bool]] = deque()
        self.busy = False  # an answer is being awaited
        self.closing = False
        self._paused = False
        self.refused = False
        self._refusal: HttpOut | None = None
        self._task: asyncio.Future[None] | None = None  # the answer being awaited
        self.last_seen = time.monotonic()
        self.peer: str | None = None
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: dict[str, str] = {}
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._head_size = 0

    @property
    def idle(self) -> bool:
        return not self.busy and not self._queue and not self._url and not self._raw_headers

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer = str(peer[0])
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # an answered refusal: the rest of the connection is not read
        self.last_seen = time.monotonic()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Refused):
                log.error("HTTP parser callback failed: %r", exc.__context__)
                self._refuse_quietly(400, "malformed HTTP request")
        except httptools.HttpParserUpgrade:
            self._refuse_quietly(400, "protocol upgrade is not supported")
        except httptools.HttpParserError:
            self._refuse_quietly(400, "malformed HTTP request")

    # -- httptools callbacks -----------------------------------------------------------------

    # No ``on_message_begin``: every message starts from ``_reset``'s state, made when the
    # connection is made and again when the message before it completes (a message that does
    # not complete is refused, the connection not read further). One callback fewer a request.

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        self._url += url
        if self._head_size > self.server.max_header_bytes:
            self._refuse(431, "request head too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        # Hot (a dozen calls per request from Envoy): only collect; decoded in one loop below.
        self._raw_headers.append((name, value))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.server.max_header_bytes:
            self._refuse(431, "request head too large")

    def on_headers_complete(self) -> None:
        headers = self._headers
        names = _HEADER_NAMES
        for name, value in self._raw_headers:
            try:
                key = names[name]  # the same dozen names on every request from Envoy
            except KeyError:
                key = header_name(name)
            try:  # no arguments to read: ~250 instructions a header less than naming them
                text = value.decode()
            except UnicodeDecodeError:  # the same text for the bytes that do decode
                text = value.decode("utf-8", "replace")
            headers[key] = f"{headers[key]},{text}" if key in headers else text
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.server.max_body_bytes:
            self._refuse(413, "request body too large")
        if self._headers.get("expect", "").lower() == "100-continue" and self.transport:
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.server.max_body_bytes:
            self._refuse(413, "request body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        url = self._url
        path, sep, query = url.partition(b"?")
        request = HttpIn(
            parser.get_method().decode("latin-1"),
            path.decode("latin-1"),
            query.decode("latin-1") if sep else "",
            self._headers,
            b"".join(self._body) if self._body else b"",
            self.peer,
        )
        keep_alive = parser.should_keep_alive()
        self._reset()
        if self.busy or self._queue:
            self._queue.append((request, keep_alive))
            if len(self._queue) >= MAX_PIPELINED and self.transport and not self._paused:
                self._paused = True
                self.transport.pause_reading()
            return
        self._dispatch(request, keep_alive)

    # -- answering ---------------------------------------------------------------------------

    def _dispatch(self, request: HttpIn, keep_alive: bool) -> None:
        if not request.method:  # a queued refusal
            self._write(request, self._refusal or _error(400, "malformed HTTP request"), False)
            return
        try:
            result = self.server.handler(request)
        except Exception:
            log.exception("HTTP handler failed for %s", request.path[:100])
            result = _error(500, "internal error")
        if isinstance(result, HttpOut):
            self._write(request, result, keep_alive)
            return
        self.busy = True
        self._task = asyncio.ensure_future(self._finish(request, result, keep_alive))

    async def _finish(self, request: HttpIn, pending: Awaitable[HttpOut], keep_alive: bool) -> None:
        try:
            out = await pending
        except Exception:
            log.exception("HTTP handler failed for %s", request.path[:100])
            out = _error(500, "internal error")
        self.busy = False
        self._write(request, out, keep_alive)
        while self._queue and not self.busy and self.transport is not None:
            queued, queued_keep_alive = self._queue.popleft()
            self._dispatch(queued, queued_keep_alive)
        if (
            self._paused
            and not self.refused
            and self.transport is not None
            and len(self._queue) < MAX_PIPELINED
        ):
            self._paused = False
            self.transport.resume_reading()

    def _write(self, request: HttpIn, out: HttpOut, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        keep = keep_alive and not self.closing
        transport.write(serialize(out, keep_alive=keep, head=request.method == "HEAD"))
        self.last_seen = time.monotonic()
        if not keep:
            self.close()

    def _refuse(self, status: int, message: str) -> None:
        """From a parser callback: refuse the request being read, stop parsing."""
        self._refuse_quietly(status, message)
        raise _Refused

    def _refuse_quietly(self, status: int, message: str) -> None:
        """Answer a request we will not read to the end (after the answers due before it),
        then close the connection."""
        self.refused = True
        if self.transport is None:
            return
        self.transport.pause_reading()
        refusal = HttpIn("", "", "", {}, b"")
        if self.busy or self._queue:
            self._queue.append((refusal, False))
            self._refusal = _error(status, message)
            return
        self._write(refusal, _error(status, message), False)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class _Refused(Exception):
    """Raised out of a parser callback to stop parsing a refused request."""
