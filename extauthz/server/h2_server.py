"""The PDP's own gRPC server: HTTP/2 framing (RFC 9113) for gRPC calls, HPACK by ``hpack``.

Why not grpc.aio: its C core hands every event from a poller thread to the event loop, and
behind Envoy a no-op grpc.aio server spends ~250 µs of CPU per check on this machine, several
times what deciding costs; the ``h2`` library's general state machine, on which a first
version of this module ran, cost ~100 µs per call in-process (docs/deployment.md, "gRPC
server"). A gRPC server for the PDP needs a small part of HTTP/2: unary and
server-streaming calls from a client (Envoy, grpcio), so this is that part, on an
``asyncio.Protocol``:

- frames are read from one buffer, every frame type handled or ignored as RFC 9113 says
  (SETTINGS acknowledged, PING answered, PRIORITY and unknown types ignored, PUSH_PROMISE a
  protocol error); a violation is a GOAWAY with the error code and the connection closes;
- header blocks (HEADERS + CONTINUATION) are decoded by ``hpack``, in order, even for a
  refused stream (the dynamic table stays in step); ours are constant blocks without
  indexing, so no encoder state exists;
- flow control both ways: the receive windows are replenished as data is read (a message is
  bounded by ``max_message_bytes``), and answers wait for the peer's windows;
- gRPC's wire rules: one length-prefixed message per unary request, ``grpc-encoding``
  gzip/deflate/identity, a message above ``max_message_bytes`` is ``RESOURCE_EXHAUSTED``
  (grpcio's ``grpc.max_receive_message_length``), an unknown method ``UNIMPLEMENTED``, a
  request that is not gRPC an HTTP 415/405 (the gRPC spec's answers);
- everything a batch of frames produces leaves in one ``transport.write``;
- a peer that does not read our answers is not read either (``pause_writing``), and a unary
  call the client resets while its handler runs counts against MAX_CONCURRENT_STREAMS until
  the handler ends: neither a PING flood nor open-and-reset grows memory or work without end;
- ``close(grace)``: stop accepting, GOAWAY, let open calls finish within ``grace``, then
  cancel what is left (a Watch stream) and close.

TLS listeners stay on grpcio (``GRPC_TRANSPORT``, config.py): its certificate reload has no
gap, which a re-opened asyncio listener would have. The equivalence with grpcio is pinned by
tests/server/test_h2_server.py (the same answers from both).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import hpack

from .tasks import cancel_and_wait

log = logging.getLogger("extauthz.server")

Headers = Sequence[tuple[bytes, bytes]]  # a call's request headers (gRPC metadata), as sent

# gRPC status codes this module answers with (grpc.StatusCode's values).
OK = 0
CANCELLED = 1
UNKNOWN = 2
NOT_FOUND = 5
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13

# RFC 9113: frame types, flags, error codes, settings.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, COMPRESSION_ERROR = 0x5, 0x6, 0x7, 0x9
SETTINGS_HEADER_TABLE_SIZE, SETTINGS_ENABLE_PUSH, SETTINGS_MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 0x4, 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

ABORT_AFTER_SECONDS = 1.0  # a closed connection's unsent bytes wait this long for the peer
MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65_535
MAX_FRAME = 16_384  # what we accept (the default; we never raise it)
MAX_CONCURRENT_STREAMS = 1000  # per connection (Envoy multiplexes every check on a few)
MAX_HEADER_LIST_BYTES = 64 * 1024  # a header block decoding larger is a connection error
STREAM_WINDOW = 1 << 20  # per stream: a large body arrives without waiting for an update
CONNECTION_REFILL = 1 << 30  # the connection window is refilled after this much data
# Streams we reset while the client was still sending, remembered (the latest this many) so
# that its frames already in flight on them are dropped, not taken for a protocol error.
RESET_STREAMS_KEPT = 4096

# RFC 9113, 8.3.1: a request's pseudo-headers (as bits), those it must have, and 8.2.2: the
# connection-specific fields an HTTP/2 request must not carry
_METHOD, _SCHEME, _PATH, _AUTHORITY = 1, 2, 4, 8
_REQUEST_PSEUDO = {
    b":method": _METHOD,
    b":scheme": _SCHEME,
    b":path": _PATH,
    b":authority": _AUTHORITY,
}
_REQUIRED = _METHOD | _SCHEME | _PATH
_CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade")
)

_PREFIX = 5  # gRPC message: compressed flag (1 byte) + length (4 bytes, big-endian)


def _int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541, 5.1) with ``first``'s high bits in its first byte."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(name: bytes, value: bytes) -> bytes:
    """A header as an HPACK literal without indexing, new name, no Huffman: no encoder state
    on either side changes, so our blocks are constants."""
    return b"\x00" + _int(len(name), 7) + name + _int(len(value), 7) + value


# --- HPACK decoding: the plain decoder, and the memo in front of it ------------------------
#: The seam: False decodes every header block with ``hpack`` (``PlainHeaders``).
HPACK_MEMO = True
MEMO_BLOCKS = 64  # distinct blocks remembered per connection


class PlainHeaders:
    """Every header block decoded by ``hpack``, in order."""

    def __init__(self) -> None:
        self.hpack = hpack.Decoder()
        self.hpack.max_header_list_size = MAX_HEADER_LIST_BYTES

    def decode(self, block: bytes) -> Headers:
        return self.hpack.decode(block, raw=True)  # type: ignore[return-value]


class MemoHeaders(PlainHeaders):
    """``PlainHeaders`` with a memo of blocks that cannot change the dynamic table.

    Envoy sends the same header block for every ext_authz call once its table holds them (42
    identical bytes, measured), and decoding it is most of this server's CPU per call. A block
    without a literal *with incremental indexing* and without a table size update leaves the
    table as it was, so it means the same headers for as long as the table stays so: it is
    remembered; any other block may change the table, so it empties the memo before it is
    decoded. A remembered block is answered from the memo without decoding.
    ``tests/server/test_h2_server.py`` pins it to ``PlainHeaders`` over random encoder runs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.memo: dict[bytes, Headers] = {}

    def decode(self, block: bytes) -> Headers:
        memo = self.memo
        known = memo.get(block)
        if known is not None:
            return known
        if not _leaves_table_alone(block):
            memo.clear()
            return self.hpack.decode(block, raw=True)  # type: ignore[no-any-return]
        headers = tuple(self.hpack.decode(block, raw=True))  # shared by calls: immutable
        if len(memo) < MEMO_BLOCKS:
            memo[block] = headers
        return headers


def header_decoder() -> PlainHeaders:
    return MemoHeaders() if HPACK_MEMO else PlainHeaders()


def _hpack_int(block: bytes, at: int, prefix_bits: int) -> int:
    """The end offset of an HPACK integer starting at ``at`` (RFC 7541, 5.1); -1 if cut."""
    limit = (1 << prefix_bits) - 1
    if block[at] & limit != limit:
        return at + 1
    at += 1
    while at < len(block):
        if not block[at] & 0x80:
            return at + 1
        at += 1
    return -1


def _hpack_string_end(block: bytes, at: int) -> int:
    """The end offset of an HPACK string literal starting at ``at``; -1 if cut."""
    if at >= len(block):
        return -1
    limit = 0x7F
    length = block[at] & limit
    end = at + 1
    if length == limit:  # a multi-byte length
        length, shift = limit, 0
        while True:
            if end >= len(block):
                return -1
            byte = block[end]
            end += 1
            length += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
    end += length
    return end if end <= len(block) else -1


def _leaves_table_alone(block: bytes) -> bool:
    """True when every representation in ``block`` is an indexed field or a literal without
    indexing / never indexed (RFC 7541, 6.1-6.2): none of them touches the dynamic table. A
    literal with incremental indexing (``01``), a size update (``001``) or a block that does
    not parse is False (then it is decoded, and ``hpack`` says what is wrong)."""
    at, size = 0, len(block)
    while at < size:
        first = block[at]
        if first & 0x80:  # indexed field
            at = _hpack_int(block, at, 7)
        elif first & 0xE0 == 0:  # 0000xxxx / 0001xxxx: literal without indexing / never
            name_index = first & 0x0F
            at = _hpack_int(block, at, 4)
            if at != -1 and name_index == 0:
                at = _hpack_string_end(block, at)  # the name's literal
            if at != -1:
                at = _hpack_string_end(block, at)  # the value
        else:  # 01xxxxxx (indexing) or 001xxxxx (size update): the table changes
            return False
        if at == -1:
            return False
    return True


def _frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes((kind, flags))
        + stream_id.to_bytes(4, "big")
        + payload
    )


_STATUS_200 = b"\x88"  # ":status: 200", static table index 8
_RESPONSE_BLOCK = _STATUS_200 + _literal(b"content-type", b"application/grpc")
_OK_TRAILERS_BLOCK = _literal(b"grpc-status", b"0")
_SERVER_PREFACE = _frame(
    SETTINGS,
    0,
    0,
    b"".join(
        key.to_bytes(2, "big") + value.to_bytes(4, "big")
        for key, value in (
            (SETTINGS_MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS),
            (SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW),
            (SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST_BYTES),
        )
    ),
) + _frame(WINDOW_UPDATE, 0, 0, (MAX_WINDOW - DEFAULT_WINDOW).to_bytes(4, "big"))
_SETTINGS_ACK = _frame(SETTINGS, ACK, 0)


def _is_grpc(content_type: bytes) -> bool:
    """``application/grpc``, alone or with a ``+format`` or parameters (the gRPC spec)."""
    rest = content_type[16:] if content_type[:16].lower() == b"application/grpc" else None
    return rest is not None and (not rest or rest[:1] in (b"+", b";"))


def _grpc_message(text: str) -> bytes:
    """``grpc-message``: percent-encoded UTF-8 outside printable ASCII (the gRPC spec)."""
    return quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode("ascii")


def _message_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


class GrpcError(Exception):
    """Raised by a handler: the call ends with this status instead of a message."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _ConnectionError(Exception):
    """A connection error (RFC 9113, 5.4.1): GOAWAY with ``code``, then close."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


Unary = Callable[[bytes, Headers], "bytes | Awaitable[bytes]"]
ServerStream = Callable[[bytes, Headers], AsyncIterator[bytes]]


@dataclass(slots=True)
class _Call:
    """One stream: its request as it arrives, and what waits to be sent on it."""

    path: bytes
    headers: Headers
    send_window: int
    encoding: bytes = b"identity"
    body: bytearray = field(default_factory=bytearray)
    unacked: int = 0  # received bytes not yet given back with a stream WINDOW_UPDATE
    remote_closed: bool = False  # the client has sent END_STREAM
    done: bool = False  # answered or refused: later data is dropped
    pending: bytearray = field(default_factory=bytearray)  # DATA waiting for window
    trailers: bytes | None = None  # the trailers' block, sent once ``pending`` is out
    task: asyncio.Task[None] | None = None
    streaming: bool = False


class H2GrpcServer:
    """The registered methods, the listening sockets and the open connections."""

    def __init__(self, *, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._unary: dict[bytes, Unary] = {}
        self._streams: dict[bytes, ServerStream] = {}
        self._servers: dict[int | str, asyncio.Server] = {}
        self.connections: set[_Connection] = set()
        self.closing = False

    def add_unary(self, path: str, handler: Unary) -> None:
        self._unary[path.encode()] = handler

    def add_server_stream(self, path: str, handler: ServerStream) -> None:
        self._streams[path.encode()] = handler

    async def listen_unix(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        self._servers[path] = await loop.create_unix_server(lambda: _Connection(self), path)

    async def listen_tcp(self, host: str, port: int, *, reuse_port: bool) -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_port=reuse_port or None, backlog=1024
        )
        bound = int(server.sockets[0].getsockname()[1])
        self._servers[bound] = server
        return bound

    def stop_listening(self, address: int | str) -> None:
        server = self._servers.pop(address, None)
        if server is not None:
            server.close()

    def open_calls(self) -> int:
        return sum(len(c.calls) for c in self.connections)

    async def close(self, grace: float) -> None:
        """Stop accepting, GOAWAY every connection, wait up to ``grace`` for open calls, then
        cancel what is left (grpcio's ``stop(grace)``)."""
        self.closing = True
        for address in list(self._servers):
            self.stop_listening(address)
        for connection in list(self.connections):
            connection.go_away()
        deadline = time.monotonic() + grace
        while self.open_calls() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            await connection.abort_calls()
            connection.close()


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection: frames in, calls dispatched, frames out in one write."""

    def __init__(self, server: H2GrpcServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.decoder = header_decoder()
        self.buffer = bytearray()
        self.out = bytearray()  # frames to write at the end of this batch
        self.calls: dict[int, _Call] = {}
        self.preface = False  # the client's preface has been read
        self.highest = 0  # the highest stream id the client opened
        self.going_away = False  # the client sent GOAWAY
        self.going_away_sent = False  # we did: new streams are refused
        self.closed = False
        self.send_window = DEFAULT_WINDOW  # the connection's, the peer's to give
        self.initial_send_window = DEFAULT_WINDOW  # the peer's SETTINGS_INITIAL_WINDOW_SIZE
        self.max_send_frame = MAX_FRAME  # the peer's SETTINGS_MAX_FRAME_SIZE
        self.recv_unacked = 0  # received connection-window bytes not yet given back
        self.continuing: tuple[int, int, bytearray] | None = None  # (stream, flags, block)
        self.reset_streams: dict[int, None] = {}  # ordered: see ``RESET_STREAMS_KEPT``
        # handlers of unary calls reset before their answer: they run on (``_later``), so they
        # count against MAX_CONCURRENT_STREAMS, else open-and-reset starts them without end
        self.orphans: set[asyncio.Task[None]] = set()

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)
        self.out += _SERVER_PREFACE
        if self.server.closing:
            self.go_away()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for call in self.calls.values():
            if call.streaming and call.task is not None:
                call.task.cancel()  # a Watch stream; a check's replay claim runs on (``_later``)
        self.calls.clear()

    def pause_writing(self) -> None:
        """The peer is not reading what we write (every PING and SETTINGS asks for an answer):
        stop reading it until it does, so that a flood is not buffered without end."""
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        buffer = self.buffer
        buffer += data
        try:
            if not self.preface:
                if len(buffer) < len(PREFACE):
                    if not PREFACE.startswith(bytes(buffer)):
                        raise _ConnectionError(PROTOCOL_ERROR, "not the HTTP/2 preface")
                    return
                if buffer[: len(PREFACE)] != PREFACE:
                    raise _ConnectionError(PROTOCOL_ERROR, "not the HTTP/2 preface")
                del buffer[: len(PREFACE)]
                self.preface = True
            start = 0
            size = len(buffer)
            while size - start >= 9:
                length = int.from_bytes(buffer[start : start + 3], "big")
                if length > MAX_FRAME:
                    raise _ConnectionError(FRAME_SIZE_ERROR, f"frame of {length} bytes")
                end = start + 9 + length
                if end > size:
                    break
                kind = buffer[start + 3]
                flags = buffer[start + 4]
                sid = int.from_bytes(buffer[start + 5 : start + 9], "big") & 0x7FFFFFFF
                payload = bytes(buffer[start + 9 : end])
                start = end
                self._frame(kind, flags, sid, payload)
                if self.closed:
                    return
            del buffer[:start]
        except _ConnectionError as exc:
            log.debug("gRPC connection: HTTP/2 error %d: %s", exc.code, exc)
            self._go_away(exc.code, str(exc))
            self._flush()
            self.close()
            return
        if self.recv_unacked >= CONNECTION_REFILL:
            self.out += _frame(WINDOW_UPDATE, 0, 0, self.recv_unacked.to_bytes(4, "big"))
            self.recv_unacked = 0
        self._flush()

    # --- frames ----------------------------------------------------------------------------
    def _frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if self.continuing is not None and kind != CONTINUATION:
            raise _ConnectionError(PROTOCOL_ERROR, "a header block was interrupted")
        if kind == DATA:
            self._on_data(flags, sid, payload)
        elif kind == HEADERS:
            self._on_headers(flags, sid, payload)
        elif kind == CONTINUATION:
            if self.continuing is None or self.continuing[0] != sid:
                raise _ConnectionError(PROTOCOL_ERROR, "CONTINUATION without HEADERS")
            block = self.continuing[2]
            block += payload
            if len(block) > MAX_HEADER_LIST_BYTES * 2:
                raise _ConnectionError(COMPRESSION_ERROR, "header block too large")
            if flags & END_HEADERS:
                first_flags = self.continuing[1]
                self.continuing = None
                self._header_block(first_flags, sid, bytes(block))
        elif kind == SETTINGS:
            self._on_settings(flags, sid, payload)
        elif kind == WINDOW_UPDATE:
            self._on_window_update(sid, payload)
        elif kind == PING:
            if sid != 0 or len(payload) != 8:
                raise _ConnectionError(PROTOCOL_ERROR if sid else FRAME_SIZE_ERROR, "bad PING")
            if not flags & ACK:
                self.out += _frame(PING, ACK, 0, payload)
        elif kind == RST_STREAM:
            if len(payload) != 4:
                raise _ConnectionError(FRAME_SIZE_ERROR, "RST_STREAM of a wrong length")
            if sid == 0:
                raise _ConnectionError(PROTOCOL_ERROR, "RST_STREAM on stream 0")
            if sid > self.highest:
                raise _ConnectionError(PROTOCOL_ERROR, "RST_STREAM on an idle stream")
            self._forget(sid)
        elif kind == PRIORITY:
            if sid == 0:
                raise _ConnectionError(PROTOCOL_ERROR, "PRIORITY on stream 0")
            if len(payload) != 5:  # a stream error (RFC 9113, 6.3), made a connection one
                raise _ConnectionError(FRAME_SIZE_ERROR, "PRIORITY of a wrong length")
        elif kind == GOAWAY:
            if sid != 0:
                raise _ConnectionError(PROTOCOL_ERROR, "GOAWAY on a stream")
            self.going_away = True  # the client opens no more streams; open ones go on
        elif kind == PUSH_PROMISE:
            raise _ConnectionError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # any other type is ignored (RFC 9113, 4.1)

    def _strip_padding(self, flags: int, payload: bytes) -> bytes:
        if not flags & PADDED:
            return payload
        if not payload or payload[0] >= len(payload):
            raise _ConnectionError(PROTOCOL_ERROR, "padding longer than the frame")
        return payload[1 : len(payload) - payload[0]]

    def _on_data(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise _ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        self.recv_unacked += len(payload)  # padding included: all of it counts
        call = self.calls.get(sid)
        if call is None:
            if sid > self.highest:
                raise _ConnectionError(PROTOCOL_ERROR, "DATA on an idle stream")
            return  # a stream we have finished: dropped, its window counted above
        if call.remote_closed:
            self._reset(sid, STREAM_CLOSED)
            return
        data = self._strip_padding(flags, payload)
        if flags & END_STREAM:
            call.remote_closed = True
        elif not call.done:
            call.unacked += len(payload)
            if call.unacked >= STREAM_WINDOW // 2:
                self.out += _frame(WINDOW_UPDATE, 0, sid, call.unacked.to_bytes(4, "big"))
                call.unacked = 0
        if not call.done:
            body = call.body
            body += data
            if len(body) >= _PREFIX:
                limit = self.server.max_message_bytes
                declared = int.from_bytes(body[1:5], "big")
                if declared > limit:
                    self._finish(
                        sid,
                        call,
                        RESOURCE_EXHAUSTED,
                        f"Received message larger than max ({declared} vs. {limit})",
                    )
                elif len(body) > _PREFIX + limit:  # a second message: refused at once
                    self._finish(sid, call, INTERNAL, "a unary request carries exactly one message")
        if call.remote_closed:
            self._on_end(sid, call)

    def _on_headers(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise _ConnectionError(PROTOCOL_ERROR, "HEADERS on stream 0")
        block = self._strip_padding(flags, payload)
        if flags & PRIORITY_FLAG:
            if len(block) < 5:
                raise _ConnectionError(FRAME_SIZE_ERROR, "HEADERS priority fields cut")
            block = block[5:]
        if flags & END_HEADERS:
            self._header_block(flags, sid, block)
        else:
            self.continuing = (sid, flags, bytearray(block))

    def _header_block(self, flags: int, sid: int, block: bytes) -> None:
        try:  # decoded even when the stream is refused: the dynamic table must stay in step
            headers = self.decoder.decode(block)
        except hpack.HPACKError as exc:
            raise _ConnectionError(COMPRESSION_ERROR, f"header block: {exc}") from None
        call = self.calls.get(sid)
        if call is None and sid <= self.highest and sid & 1:
            if sid in self.reset_streams:
                return  # trailers that crossed our RST_STREAM: ignored
            # a stream that is over, or one skipped: a request on it would go unanswered
            raise _ConnectionError(PROTOCOL_ERROR, f"HEADERS on closed stream {sid}")
        if call is not None:  # trailers from the client: they must end the stream
            if call.remote_closed:  # half-closed (remote): RFC 9113, 5.1
                self._reset(sid, STREAM_CLOSED)
                return
            if not flags & END_STREAM:
                self._reset(sid, PROTOCOL_ERROR)
                return
            call.remote_closed = True
            self._on_end(sid, call)
            return
        if sid <= self.highest or not sid & 1:
            raise _ConnectionError(PROTOCOL_ERROR, f"HEADERS opening stream {sid}")
        self.highest = sid
        if self.going_away_sent or len(self.calls) + len(self.orphans) >= MAX_CONCURRENT_STREAMS:
            self._reset(sid, REFUSED_STREAM)
            return
        self._on_request(sid, headers, bool(flags & END_STREAM))  # type: ignore[arg-type]

    def _on_settings(self, flags: int, sid: int, payload: bytes) -> None:
        if sid != 0:
            raise _ConnectionError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise _ConnectionError(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise _ConnectionError(FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6")
        for at in range(0, len(payload), 6):
            key = int.from_bytes(payload[at : at + 2], "big")
            value = int.from_bytes(payload[at + 2 : at + 6], "big")
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise _ConnectionError(FLOW_CONTROL_ERROR, "initial window above 2^31-1")
                delta = value - self.initial_send_window
                self.initial_send_window = value
                for call in self.calls.values():
                    call.send_window += delta
                    if call.send_window > MAX_WINDOW:
                        raise _ConnectionError(FLOW_CONTROL_ERROR, "stream window above 2^31-1")
            elif key == SETTINGS_ENABLE_PUSH:
                if value > 1:
                    raise _ConnectionError(PROTOCOL_ERROR, f"enable push {value}")
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not MAX_FRAME <= value <= 2**24 - 1:
                    raise _ConnectionError(PROTOCOL_ERROR, f"max frame size {value}")
                self.max_send_frame = value
            # HEADER_TABLE_SIZE: our blocks never index, so the peer's table size is moot;
            # MAX_CONCURRENT_STREAMS (we open none), others: nothing to do.
        self.out += _SETTINGS_ACK
        self._resume_all()

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(FRAME_SIZE_ERROR, "WINDOW_UPDATE of a wrong length")
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if sid == 0:
            if increment == 0:
                raise _ConnectionError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise _ConnectionError(FLOW_CONTROL_ERROR, "connection window above 2^31-1")
            self._resume_all()
            return
        call = self.calls.get(sid)
        if call is None:
            if sid > self.highest:
                raise _ConnectionError(PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            return
        if increment == 0:
            self._reset(sid, PROTOCOL_ERROR)
            return
        call.send_window += increment
        if call.send_window > MAX_WINDOW:
            self._reset(sid, FLOW_CONTROL_ERROR)
            return
        self._resume(sid, call)

    # --- calls -----------------------------------------------------------------------------
    def _on_request(self, sid: int, headers: Headers, ended: bool) -> None:
        """A new call from its header block; a malformed block (RFC 9113, 8.2-8.3: an unknown,
        repeated or late pseudo-header, a missing :method/:scheme/:path, an upper-case name, a
        connection-specific field, ``te`` other than ``trailers``) resets the stream."""
        method = path = content_type = b""
        encoding = b"identity"
        seen = 0  # the pseudo-headers' bits
        regular = False
        for name, value in headers:
            if name[:1] == b":":
                bit = _REQUEST_PSEUDO.get(name, 0)
                if not bit or seen & bit or regular:
                    self._reset(sid, PROTOCOL_ERROR)
                    return
                seen |= bit
                if bit == _PATH:
                    path = value
                elif bit == _METHOD:
                    method = value
                continue
            regular = True
            if name == b"content-type":
                content_type = value
            elif name == b"grpc-encoding":
                encoding = value
            elif name in _CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
                self._reset(sid, PROTOCOL_ERROR)
                return
            if name.lower() != name:
                self._reset(sid, PROTOCOL_ERROR)
                return
        if seen & _REQUIRED != _REQUIRED:
            self._reset(sid, PROTOCOL_ERROR)
            return
        call = _Call(path, headers, self.initial_send_window, encoding, remote_closed=ended)
        self.calls[sid] = call
        server = self.server
        if method != b"POST":
            self._refuse_http(sid, call, b"405")
        elif not _is_grpc(content_type):
            self._refuse_http(sid, call, b"415")
        elif path not in server._unary and path not in server._streams:
            self._finish(sid, call, UNIMPLEMENTED, "Method not found!")
        elif ended:
            self._on_end(sid, call)

    def _on_end(self, sid: int, call: _Call) -> None:
        """The request is complete: run its handler (once), or finish the stream."""
        if call.done:
            self._close_if_done(sid, call)
            return
        if call.task is not None:
            return  # a streaming call already running
        try:
            message = self._message(call)
        except GrpcError as exc:
            self._finish(sid, call, exc.code, exc.message)
            return
        unary = self.server._unary.get(call.path)
        if unary is None:
            call.streaming = True
            stream = self.server._streams[call.path]
            call.task = asyncio.ensure_future(
                self._stream(sid, call, stream(message, call.headers))
            )
            return
        try:
            answer = unary(message, call.headers)
        except GrpcError as exc:
            self._finish(sid, call, exc.code, exc.message)
            return
        except Exception:
            log.exception("gRPC handler failed: %s", call.path.decode(errors="replace"))
            self._finish(sid, call, UNKNOWN, "handler failed")
            return
        if isinstance(answer, bytes):
            self._answer(sid, call, answer)
        else:
            call.task = asyncio.ensure_future(self._later(sid, call, answer))

    def _message(self, call: _Call) -> bytes:
        """The one message of a request (gRPC's length-prefixed message, decompressed)."""
        body = call.body
        if len(body) < _PREFIX:
            raise GrpcError(INTERNAL, "request has no message")
        compressed = body[0]
        size = int.from_bytes(body[1:5], "big")
        if len(body) != _PREFIX + size:
            raise GrpcError(INTERNAL, "a unary request carries exactly one message")
        message = bytes(body[_PREFIX:])
        if compressed == 0:
            return message
        if compressed != 1 or call.encoding == b"identity":
            raise GrpcError(INTERNAL, "compressed flag set without a grpc-encoding")
        if call.encoding not in (b"gzip", b"deflate"):
            raise GrpcError(
                UNIMPLEMENTED, f"grpc-encoding {call.encoding.decode(errors='replace')!r}"
            )
        limit = self.server.max_message_bytes
        inflater = zlib.decompressobj(31 if call.encoding == b"gzip" else 15)
        try:
            out = inflater.decompress(message, limit + 1)
        except zlib.error as exc:
            raise GrpcError(INTERNAL, f"cannot decompress the message: {exc}") from None
        if len(out) > limit:
            raise GrpcError(
                RESOURCE_EXHAUSTED, f"Received message larger than max (more than {limit})"
            )
        if not inflater.eof:
            raise GrpcError(INTERNAL, "cannot decompress the message: truncated")
        return out

    # --- answers ---------------------------------------------------------------------------
    def _headers_frame(self, sid: int, block: bytes, end_stream: bool) -> None:
        # our blocks are < 1 KiB (a grpc-message is cut at 400 characters): one frame each
        self.out += _frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, block)

    def _answer(self, sid: int, call: _Call, message: bytes) -> None:
        call.done = True
        self._headers_frame(sid, _RESPONSE_BLOCK, False)
        call.trailers = _OK_TRAILERS_BLOCK
        self._send(sid, call, _message_frame(message))

    def _finish(self, sid: int, call: _Call, code: int, message: str) -> None:
        """A trailers-only answer with ``code``."""
        call.done = True
        block = _RESPONSE_BLOCK + _literal(b"grpc-status", str(code).encode())
        if message:
            block += _literal(b"grpc-message", _grpc_message(message[:400]))
        self._headers_frame(sid, block, True)
        call.trailers = None
        self._ended(sid, call)

    def _refuse_http(self, sid: int, call: _Call, status: bytes) -> None:
        call.done = True
        self._headers_frame(sid, _literal(b":status", status), True)
        self._ended(sid, call)

    def _send(self, sid: int, call: _Call, data: bytes) -> None:
        """Queue ``data`` on the stream and send what the windows allow (then the trailers)."""
        call.pending += data
        self._resume(sid, call)

    def _resume(self, sid: int, call: _Call) -> None:
        pending = call.pending
        while pending:
            size = min(len(pending), call.send_window, self.send_window, self.max_send_frame)
            if size <= 0:
                return
            self.out += _frame(DATA, 0, sid, bytes(pending[:size]))
            del pending[:size]
            call.send_window -= size
            self.send_window -= size
        if call.trailers is not None:
            self._headers_frame(sid, call.trailers, True)
            call.trailers = None
            if call.done:
                self._ended(sid, call)

    def _resume_all(self) -> None:
        for sid, call in list(self.calls.items()):
            if call.pending or call.trailers is not None:
                self._resume(sid, call)

    def _ended(self, sid: int, call: _Call) -> None:
        """Our side has sent END_STREAM."""
        call.pending.clear()
        self._close_if_done(sid, call, ours=True)

    def _close_if_done(self, sid: int, call: _Call, ours: bool = False) -> None:
        if not ours and (call.pending or call.trailers is not None):
            return  # our answer is still being sent
        if not ours and not call.done:
            return
        self.calls.pop(sid, None)
        if not call.remote_closed:  # the client is still sending: stop it (gRPC servers do)
            self.out += _frame(RST_STREAM, 0, sid, NO_ERROR.to_bytes(4, "big"))
            self._remember_reset(sid)

    def _reset(self, sid: int, code: int) -> None:
        self.out += _frame(RST_STREAM, 0, sid, code.to_bytes(4, "big"))
        self._remember_reset(sid)
        self._forget(sid)

    def _remember_reset(self, sid: int) -> None:
        kept = self.reset_streams
        kept[sid] = None
        if len(kept) > RESET_STREAMS_KEPT:
            del kept[next(iter(kept))]

    def _forget(self, sid: int) -> None:
        call = self.calls.pop(sid, None)
        if call is None or call.task is None or call.task.done():
            return
        if call.streaming:
            call.task.cancel()
        else:
            self.orphans.add(call.task)
            call.task.add_done_callback(self.orphans.discard)

    async def _later(self, sid: int, call: _Call, answer: Awaitable[bytes]) -> None:
        """A unary answer that had to wait (a webhook's replay claim): always awaited to its
        end, so the servicer's accounting closes, even when the client has gone."""
        try:
            message = await answer
        except GrpcError as exc:
            code, text = exc.code, exc.message
            self._late(sid, call, lambda: self._finish(sid, call, code, text))
            return
        except Exception:
            log.exception("gRPC handler failed: %s", call.path.decode(errors="replace"))
            self._late(sid, call, lambda: self._finish(sid, call, UNKNOWN, "handler failed"))
            return
        self._late(sid, call, lambda: self._answer(sid, call, message))

    def _late(self, sid: int, call: _Call, send: Callable[[], None]) -> None:
        if not self.closed and self.calls.get(sid) is call:
            send()
            self._flush()

    async def _stream(self, sid: int, call: _Call, messages: AsyncIterator[bytes]) -> None:
        """A server-streaming call (Health/Watch): headers, then each message as it comes."""
        started = False
        code, text = OK, ""
        try:
            async for message in messages:
                if self.closed or self.calls.get(sid) is not call:
                    return
                if not started:
                    self._headers_frame(sid, _RESPONSE_BLOCK, False)
                    started = True
                self._send(sid, call, _message_frame(message))
                self._flush()
        except asyncio.CancelledError:
            if self.closed or self.calls.get(sid) is not call:
                raise
            code, text = CANCELLED, "the server is stopping"
        except GrpcError as exc:
            code, text = exc.code, exc.message
        except Exception:
            log.exception("gRPC stream failed: %s", call.path.decode(errors="replace"))
            code, text = UNKNOWN, "handler failed"
        finally:
            aclose = getattr(messages, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        if self.closed or self.calls.get(sid) is not call:
            return
        if not started:
            self._finish(sid, call, code, text)
        else:
            call.done = True
            block = _literal(b"grpc-status", str(code).encode())
            if text:
                block += _literal(b"grpc-message", _grpc_message(text))
            call.trailers = block
            self._resume(sid, call)
        self._flush()

    # --- connection ------------------------------------------------------------------------
    def _flush(self) -> None:
        if self.out and self.transport is not None and not self.closed:
            self.transport.write(bytes(self.out))
        self.out.clear()

    def _go_away(self, code: int, reason: str = "") -> None:
        self.going_away_sent = True
        payload = self.highest.to_bytes(4, "big") + code.to_bytes(4, "big") + reason.encode()
        self.out += _frame(GOAWAY, 0, 0, payload[:MAX_FRAME])

    def go_away(self) -> None:
        """A graceful GOAWAY: no new calls on this connection; open ones go on."""
        if self.closed or self.going_away_sent:
            return
        self._go_away(NO_ERROR)
        self._flush()

    async def abort_calls(self) -> None:
        tasks = [c.task for c in self.calls.values() if c.task is not None]
        for task in tasks:
            await cancel_and_wait(task)

    def close(self) -> None:
        """Close after what is buffered is written; a peer that reads nothing any more is cut
        off after ``ABORT_AFTER_SECONDS`` (the socket would otherwise stay open)."""
        transport = self.transport
        if transport is not None and not self.closed:
            transport.close()
            if transport.get_write_buffer_size():
                asyncio.get_running_loop().call_later(ABORT_AFTER_SECONDS, transport.abort)
        self.closed = True
