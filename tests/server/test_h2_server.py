"""The built-in gRPC server (extauthz/server/h2_server.py) over real Unix sockets.

Two independent clients talk to it: the ``h2`` library (which also checks that what the
server sends is valid HTTP/2, its flow control included) for well-formed traffic, and raw
frames built here for the violations h2 refuses to produce. Every hostile case ends with
``assert_survives``: a good call on a new connection is answered and no call is left open.
No assertion depends on time: waits are bounded only by a generous hang guard.

Sections: 1. the same answers as grpcio (full servers), 2. gRPC's wire rules, 3. HTTP/2
framing, 4. flow control, 5. abuse (floods, rapid resets), 6. drain, 7. fuzzing
``data_received``. Sections 2-7 run a bare ``H2GrpcServer`` with small handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from _server_support import (
    CHECK_METHOD,
    check_request,
    stripe_event,
    stripe_headers,
)
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse
from google.protobuf import json_format
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extauthz.server.h2_server import (
    H2GrpcServer,
    MemoHeaders,
    PlainHeaders,
    _Connection,
    _leaves_table_alone,
)
from extauthz.server.health import HEALTH_CHECK, HEALTH_WATCH, HealthBoard
from tests._transport import RecordingTransport

HANG = 30.0  # a hang guard only: nothing here asserts how long anything takes

# RFC 9113 numbers, spelled here rather than imported from the module under test.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED = 0x0, 0x1, 0x3, 0x5
FRAME_SIZE_ERROR, REFUSED_STREAM, COMPRESSION_ERROR = 0x6, 0x7, 0x9
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

ECHO = "/test.T/Echo"  # answers the message itself, synchronously
LATER = "/test.T/Later"  # answers the message from a coroutine (the replay-claim path)
WAIT = "/test.T/Wait"  # answers once the test sets ``Bare.release``
LIMIT = 4096  # the bare server's max_message_bytes unless a test raises it


# --- helpers: frames, messages ---------------------------------------------------------------
def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


def settings_frame(*pairs: tuple[int, int]) -> bytes:
    return frame(
        SETTINGS, 0, 0, b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in pairs)
    )


def grpc_frame(message: bytes, compressed: int = 0) -> bytes:
    return bytes((compressed,)) + len(message).to_bytes(4, "big") + message


def request_headers(
    path: str = ECHO,
    *,
    method: bytes = b"POST",
    content_type: bytes = b"application/grpc",
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", b"pdp"),
        (b"content-type", content_type),
        (b"te", b"trailers"),
        *extra,
    ]


def grpc_messages(data: bytes) -> list[bytes]:
    """Split a response body into its gRPC messages; a cut message fails the test."""
    out = []
    while data:
        assert len(data) >= 5, f"a cut message prefix: {data!r}"
        size = int.from_bytes(data[1:5], "big")
        assert data[0] == 0 and len(data) >= 5 + size, "a cut or compressed message"
        out.append(data[5 : 5 + size])
        data = data[5 + size :]
    return out


@dataclass
class Response:
    """One stream's answer as a client saw it."""

    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytes = b""
    trailers: dict[bytes, bytes] = field(default_factory=dict)
    reset: int | None = None  # RST_STREAM's code, if the stream was reset
    ended: bool = False

    @property
    def status(self) -> bytes | None:
        return self.headers.get(b":status")

    @property
    def grpc_status(self) -> int | None:
        raw = self.trailers.get(b"grpc-status", self.headers.get(b"grpc-status"))
        return None if raw is None else int(raw)

    @property
    def messages(self) -> list[bytes]:
        return grpc_messages(self.data)


async def settle(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until ``predicate`` holds (connection_lost runs a turn after close)."""
    async with asyncio.timeout(HANG):
        while not predicate():
            await asyncio.sleep(0.001)


# --- helpers: an h2 client ---------------------------------------------------------------------
class H2Peer:
    """A client on the ``h2`` library: it validates every frame the server sends."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: h2.connection.H2Connection,
    ) -> None:
        self.reader, self.writer, self.conn = reader, writer, conn
        self.responses: dict[int, Response] = {}
        self.events: list[h2.events.Event] = []

    @classmethod
    async def open(cls, path: str, local_settings: dict[int, int] | None = None) -> H2Peer:
        reader, writer = await asyncio.open_unix_connection(path)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        if local_settings:
            conn.local_settings = h2.settings.Settings(client=True, initial_values=local_settings)
        conn.initiate_connection()
        peer = cls(reader, writer, conn)
        peer.flush()
        return peer

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    async def pump(self, acknowledge: bool = True) -> list[h2.events.Event]:
        """Read once, feed h2, record what it reports; EOF raises."""
        async with asyncio.timeout(HANG):
            data = await self.reader.read(65536)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        events = self.conn.receive_data(data)
        for event in events:
            self._record(event, acknowledge)
        self.events += events
        self.flush()
        return events

    def _record(self, event: h2.events.Event, acknowledge: bool) -> None:
        sid = getattr(event, "stream_id", None)
        if sid is None or sid not in self.responses:
            return
        response = self.responses[sid]
        if isinstance(event, h2.events.ResponseReceived):
            response.headers = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            response.data += event.data
            if acknowledge:
                self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
        elif isinstance(event, h2.events.TrailersReceived):
            response.trailers = dict(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            response.ended = True
        elif isinstance(event, h2.events.StreamReset):
            response.reset = event.error_code
            response.ended = True

    def start(self, path: str = ECHO, **kwargs: Any) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.responses[sid] = Response()
        self.conn.send_headers(sid, request_headers(path, **kwargs))
        self.flush()
        return sid

    async def send_body(
        self, sid: int, body: bytes, *, chunk: int = 16384, end: bool = True
    ) -> None:
        """Send ``body`` as the windows allow (h2 refuses to overrun them), then END_STREAM."""
        view = memoryview(body)
        while view:
            window = min(
                self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size, chunk
            )
            if window <= 0:
                await self.pump()
                continue
            self.conn.send_data(sid, bytes(view[:window]))
            view = view[window:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    async def finish(self, sid: int) -> Response:
        while not self.responses[sid].ended:
            await self.pump()
        return self.responses[sid]

    async def call(self, path: str, message: bytes, **kwargs: Any) -> Response:
        sid = self.start(path, **kwargs)
        await self.send_body(sid, grpc_frame(message))
        return await self.finish(sid)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):  # the server may have dropped us
            await self.writer.wait_closed()


@asynccontextmanager
async def h2_peer(path: str, local_settings: dict[int, int] | None = None) -> AsyncIterator[H2Peer]:
    peer = await H2Peer.open(path, local_settings)
    try:
        yield peer
    finally:
        await peer.close()


# --- helpers: a raw client ---------------------------------------------------------------------
@dataclass
class Frame:
    kind: int
    flags: int
    sid: int
    payload: bytes


class RawPeer:
    """Frames as bytes, for what h2 will not send; the answers parsed here, HPACK by hpack."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.seen: list[Frame] = []

    @classmethod
    async def open(cls, path: str, *, preface: bytes = PREFACE + settings_frame()) -> RawPeer:
        reader, writer = await asyncio.open_unix_connection(path)
        peer = cls(reader, writer)
        if preface:
            peer.send(preface)
        return peer

    def send(self, *chunks: bytes) -> None:
        self.writer.write(b"".join(chunks))

    def block(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        return self.encoder.encode(headers)

    def request(self, sid: int, body: bytes | None, path: str = ECHO, **kwargs: Any) -> None:
        """HEADERS (and one DATA with END_STREAM unless ``body`` is None)."""
        self.send(frame(HEADERS, END_HEADERS, sid, self.block(request_headers(path, **kwargs))))
        if body is not None:
            self.send(frame(DATA, END_STREAM, sid, body))

    async def next(self) -> Frame | None:
        """The next frame, or None at EOF."""
        async with asyncio.timeout(HANG):
            try:
                head = await self.reader.readexactly(9)
                payload = await self.reader.readexactly(int.from_bytes(head[:3], "big"))
            except asyncio.IncompleteReadError as exc:
                assert not exc.partial, f"a cut frame at EOF: {exc.partial!r}"
                return None
            except ConnectionResetError:
                return None
        got = Frame(head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, payload)
        self.seen.append(got)
        return got

    async def goaway(self) -> tuple[int, int]:
        """(last stream id, error code) of the GOAWAY that ends the connection, then EOF."""
        while (got := await self.next()) is not None:
            if got.kind == GOAWAY:
                assert await self.eof(), "the connection stays open after an error GOAWAY"
                return int.from_bytes(got.payload[:4], "big"), int.from_bytes(
                    got.payload[4:8], "big"
                )
        raise AssertionError(f"EOF without GOAWAY; frames: {[f.kind for f in self.seen]}")

    async def eof(self) -> bool:
        while (got := await self.next()) is not None:
            if got.kind not in (SETTINGS, WINDOW_UPDATE, PING):
                raise AssertionError(f"frame {got.kind} after GOAWAY")
        return True

    async def response(self, sid: int) -> Response:
        """The stream's answer up to END_STREAM or RST_STREAM (other streams' frames kept)."""
        out = Response()
        while (got := await self.next()) is not None:
            if got.kind == GOAWAY and got.payload[4:8] != bytes(4):
                raise AssertionError(f"GOAWAY {got.payload[4:8].hex()} {got.payload[8:]!r}")
            if got.sid != sid:
                continue
            if got.kind == HEADERS:
                assert got.flags & END_HEADERS
                decoded = dict(self.decoder.decode(got.payload, raw=True))
                if out.headers:
                    out.trailers = decoded
                else:
                    out.headers = decoded
            elif got.kind == DATA:
                out.data += got.payload
            elif got.kind == RST_STREAM:
                out.reset = int.from_bytes(got.payload, "big")
                out.ended = True
                return out
            if got.kind in (HEADERS, DATA) and got.flags & END_STREAM:
                out.ended = True
                return out
        raise AssertionError("EOF before the stream ended")

    async def close(self) -> None:
        self.writer.transport.abort()  # what we wrote may be unread (a flood): no flushing


@asynccontextmanager
async def raw_peer(path: str, **kwargs: Any) -> AsyncIterator[RawPeer]:
    peer = await RawPeer.open(path, **kwargs)
    try:
        yield peer
    finally:
        await peer.close()


# --- helpers: the fuzz test's frames ---------------------------------------------------------
def parse_frames(data: bytes) -> list[Frame]:
    """Every byte the server wrote belongs to a whole frame."""
    out = []
    while data:
        assert len(data) >= 9, f"a cut frame header: {data!r}"
        size = int.from_bytes(data[:3], "big")
        assert len(data) >= 9 + size, "a cut frame"
        out.append(
            Frame(data[3], data[4], int.from_bytes(data[5:9], "big"), bytes(data[9 : 9 + size]))
        )
        data = data[9 + size :]
    return out


# --- fixtures: a bare server with small handlers ----------------------------------------------
@dataclass
class Bare:
    server: H2GrpcServer
    path: str
    board: HealthBoard
    entered: asyncio.Event = field(default_factory=asyncio.Event)  # WAIT has started
    release: asyncio.Event = field(default_factory=asyncio.Event)  # WAIT may answer
    finished: int = 0  # WAIT handlers that ran to their end


def bare_server(path: str, max_message_bytes: int = LIMIT) -> Bare:
    server = H2GrpcServer(max_message_bytes=max_message_bytes)
    bare = Bare(server, path, HealthBoard())

    async def later(message: bytes) -> bytes:
        await asyncio.sleep(0)
        return message

    async def wait(message: bytes) -> bytes:
        bare.entered.set()
        await bare.release.wait()
        bare.finished += 1
        return message

    server.add_unary(ECHO, lambda message, headers: message)
    server.add_unary(LATER, lambda message, headers: later(message))
    server.add_unary(WAIT, lambda message, headers: wait(message))
    server.add_unary(HEALTH_CHECK, bare.board.check)
    server.add_server_stream(HEALTH_WATCH, bare.board.watch)
    return bare


StartBare = Callable[..., Awaitable[Bare]]


@pytest.fixture
async def start_bare(socket_path: str) -> AsyncIterator[StartBare]:
    started: list[Bare] = []

    async def start(max_message_bytes: int = LIMIT) -> Bare:
        bare = bare_server(socket_path, max_message_bytes)
        await bare.board.set("", health_pb2.HealthCheckResponse.SERVING)
        await bare.server.listen_unix(socket_path)
        started.append(bare)
        return bare

    try:
        yield start
    finally:
        for bare in started:
            await bare.server.close(0)


@pytest.fixture
async def bare(start_bare: StartBare) -> Bare:
    return await start_bare()


async def assert_survives(bare: Bare) -> None:
    """The server answers a good call on a new connection, and no call is left open."""
    async with h2_peer(bare.path) as peer:
        answer = await peer.call(ECHO, b"still here")
        assert answer.status == b"200" and answer.grpc_status == 0
        assert answer.messages == [b"still here"]
    await settle(lambda: bare.server.open_calls() == 0)


# --- 1. the same answers as grpcio ------------------------------------------------------------
def equivalence_requests() -> list[tuple[str, bytes]]:
    """Serialized once, so both servers read the very same bytes."""
    payload = stripe_event("evt_h2_equivalence")
    webhook = check_request(
        "POST", "/webhooks/stripe", headers=stripe_headers(payload), body=payload
    ).SerializeToString()
    near = 1 << 20  # the demo policy's maxBodyBytes
    return [
        ("allow", check_request("GET", "/healthz").SerializeToString()),
        ("block", check_request("GET", "/admin/users").SerializeToString()),
        ("unreadable", b"\xff\xff\xff\xff"),
        ("webhook", webhook),
        ("webhook replayed", webhook),
        (
            "body at the limit",
            check_request(
                "POST", "/api/v1/licenses/activate", body=b"{" * near
            ).SerializeToString(),
        ),
        (
            "body past the limit",
            check_request(
                "POST", "/api/v1/licenses/activate", body=b"{" * (near + 1)
            ).SerializeToString(),
        ),
    ]


def normalised(raw: bytes) -> dict[str, Any]:
    """The answer as a dict, with the decision id (new per request when the request names
    none, as an unreadable one cannot) replaced wherever it appears."""
    answer = CheckResponse.FromString(raw)
    decision_id = answer.dynamic_metadata.fields["decisionId"].string_value
    text = json_format.MessageToJson(answer, sort_keys=True)
    if decision_id:
        text = text.replace(decision_id, "<decision-id>")
    return json.loads(text)


async def test_builtin_and_grpcio_give_the_same_check_responses(start_inproc, socket_path) -> None:  # type: ignore[no-untyped-def]
    grpcio_path = str(Path(socket_path).with_name("grpcio.sock"))
    await start_inproc(unix_socket=socket_path, grpc_transport="builtin")
    await start_inproc(unix_socket=grpcio_path, grpc_transport="grpcio")
    requests = equivalence_requests()
    answers: dict[str, list[dict[str, Any]]] = {}
    for path in (socket_path, grpcio_path):
        async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
            stub = channel.unary_unary(CHECK_METHOD)  # bytes in, bytes out
            answers[path] = [normalised(await stub(raw, timeout=HANG)) for _, raw in requests]
    names = [name for name, _ in requests]
    for name, builtin, grpcio in zip(
        names, answers[socket_path], answers[grpcio_path], strict=True
    ):
        assert builtin == grpcio, name
    by_name = dict(zip(names, answers[socket_path], strict=True))
    assert "okResponse" in by_name["allow"]  # and the cases are what they claim to be
    assert by_name["block"]["deniedResponse"]["status"]["code"] == "Forbidden"
    assert by_name["unreadable"]["deniedResponse"]["status"]["code"] == "BadRequest"
    assert "okResponse" in by_name["webhook"]
    assert "webhook.stripe.replay" in by_name["webhook replayed"]["deniedResponse"]["body"]
    assert by_name["body at the limit"]["deniedResponse"]["status"]["code"] == "Forbidden"
    assert by_name["body past the limit"]["deniedResponse"]["status"]["code"] == "PayloadTooLarge"


async def test_builtin_and_grpcio_fail_the_same_calls_the_same_way(
    start_inproc, socket_path
) -> None:  # type: ignore[no-untyped-def]
    grpcio_path = str(Path(socket_path).with_name("grpcio.sock"))
    await start_inproc(unix_socket=socket_path, grpc_transport="builtin", max_request_bytes=4096)
    await start_inproc(unix_socket=grpcio_path, grpc_transport="grpcio", max_request_bytes=4096)
    big = check_request("POST", "/api/v1/licenses/activate", body=b"x" * 5000).SerializeToString()
    codes: dict[str, list[grpc.StatusCode]] = {}
    for path in (socket_path, grpcio_path):
        async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
            calls = [
                channel.unary_unary(CHECK_METHOD)(big, timeout=HANG),
                channel.unary_unary("/envoy.service.auth.v3.Authorization/Nope")(b"", timeout=HANG),
                channel.unary_unary(HEALTH_CHECK)(
                    health_pb2.HealthCheckRequest(service="nope").SerializeToString(), timeout=HANG
                ),
            ]
            codes[path] = []
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await call
                codes[path].append(failed.value.code())
    assert (
        codes[socket_path]
        == codes[grpcio_path]
        == [
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.UNIMPLEMENTED,
            grpc.StatusCode.NOT_FOUND,
        ]
    )


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
async def test_grpcio_compressed_checks_are_answered_like_plain_ones(
    start_inproc, socket_path, compression
) -> None:  # type: ignore[no-untyped-def]
    await start_inproc(grpc_transport="builtin")
    raw = check_request("GET", "/admin/users").SerializeToString()
    async with grpc.aio.insecure_channel(f"unix:{socket_path}") as channel:
        stub = channel.unary_unary(CHECK_METHOD)
        plain = await stub(raw, timeout=HANG)
        squeezed = await stub(raw, timeout=HANG, compression=compression)
    assert normalised(squeezed) == normalised(plain)
    assert normalised(plain)["deniedResponse"]["status"]["code"] == "Forbidden"


async def test_full_server_answers_h2_and_survives_a_bad_connection(
    start_inproc, socket_path
) -> None:  # type: ignore[no-untyped-def]
    server = await start_inproc(grpc_transport="builtin")
    assert server.h2_server is not None
    async with raw_peer(socket_path) as peer:
        peer.send(frame(HEADERS, END_HEADERS, 2, peer.block(request_headers(CHECK_METHOD))))
        assert (await peer.goaway())[1] == PROTOCOL_ERROR
    async with h2_peer(socket_path) as peer:
        answer = await peer.call(CHECK_METHOD, check_request("GET", "/healthz").SerializeToString())
        health = await peer.call(HEALTH_CHECK, health_pb2.HealthCheckRequest().SerializeToString())
    assert answer.grpc_status == 0 and CheckResponse.FromString(answer.messages[0]).status.code == 0
    assert (
        health_pb2.HealthCheckResponse.FromString(health.messages[0]).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    await settle(lambda: server.h2_server.open_calls() == 0)


# --- 2. gRPC's wire rules ---------------------------------------------------------------------
async def test_a_good_call_unary_and_from_a_coroutine(bare: Bare) -> None:
    async with h2_peer(bare.path) as peer:
        now = await peer.call(ECHO, b"now")
        later = await peer.call(LATER, b"later")
    assert now.status == b"200" and now.headers[b"content-type"] == b"application/grpc"
    assert now.messages == [b"now"] and now.grpc_status == 0
    assert later.messages == [b"later"] and later.grpc_status == 0
    await assert_survives(bare)


async def test_unknown_method_is_unimplemented(bare: Bare) -> None:
    async with h2_peer(bare.path) as peer:
        answer = await peer.call("/test.T/Nope", b"x")
    assert answer.status == b"200" and answer.grpc_status == 12 and not answer.data
    await assert_survives(bare)


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"method": b"GET"}, b"405"),
        ({"content_type": b"text/plain"}, b"415"),
        ({"content_type": b"application/grpcfoo"}, b"415"),
        ({"content_type": b"application/grpc-web"}, b"415"),
    ],
)
async def test_requests_that_are_not_grpc_get_http_statuses(
    bare: Bare, kwargs: dict[str, bytes], status: bytes
) -> None:
    async with h2_peer(bare.path) as peer:
        answer = await peer.call(ECHO, b"x", **kwargs)
    assert answer.status == status and answer.grpc_status is None
    await assert_survives(bare)


@pytest.mark.parametrize(
    "content_type",
    [b"application/grpc+proto", b"application/grpc;charset=utf-8", b"APPLICATION/GRPC"],
)
async def test_grpc_content_types_with_a_format_or_parameters_are_grpc(
    bare: Bare, content_type: bytes
) -> None:
    async with h2_peer(bare.path) as peer:
        answer = await peer.call(ECHO, b"x", content_type=content_type)
    assert answer.status == b"200" and answer.grpc_status == 0
    await assert_survives(bare)


@pytest.mark.parametrize(
    "body",
    [b"", b"\x00\x00\x00", grpc_frame(b"one") + grpc_frame(b"two"), grpc_frame(b"cut")[:-1]],
    ids=["no message", "a cut prefix", "two messages", "a cut message"],
)
async def test_a_unary_request_carries_exactly_one_message(bare: Bare, body: bytes) -> None:
    async with h2_peer(bare.path) as peer:
        sid = peer.start(ECHO)
        await peer.send_body(sid, body)
        answer = await peer.finish(sid)
    assert answer.grpc_status == 13 and not answer.data
    await assert_survives(bare)


async def test_a_declared_length_above_the_limit_is_refused_before_the_body(bare: Bare) -> None:
    async with h2_peer(bare.path) as peer:
        sid = peer.start(ECHO)
        peer.conn.send_data(sid, b"\x00" + (1 << 30).to_bytes(4, "big"))  # 1 GiB promised, 0 sent
        peer.flush()
        answer = await peer.finish(sid)
    assert answer.grpc_status == 8 and b"larger than max" in answer.headers[b"grpc-message"]
    await assert_survives(bare)


async def test_a_message_of_exactly_the_limit_is_answered(bare: Bare) -> None:
    async with h2_peer(bare.path) as peer:
        answer = await peer.call(ECHO, b"m" * LIMIT)
        over = await peer.call(ECHO, b"m" * (LIMIT + 1))
    assert answer.messages == [b"m" * LIMIT] and over.grpc_status == 8
    await assert_survives(bare)


#: Each grpc-encoding we inflate, with the compressor that makes its frames.
COMPRESSIONS = pytest.mark.parametrize(
    ("encoding", "squeeze"),
    [(b"gzip", gzip.compress), (b"deflate", zlib.compress)],
)


@COMPRESSIONS
async def test_compressed_requests_are_answered_like_plain_ones(
    bare: Bare, encoding: bytes, squeeze: Callable[[bytes], bytes]
) -> None:
    message = b"compress me " * 50
    async with h2_peer(bare.path) as peer:
        sid = peer.start(ECHO, extra=((b"grpc-encoding", encoding),))
        await peer.send_body(sid, grpc_frame(squeeze(message), compressed=1))
        answer = await peer.finish(sid)
        plain = await peer.call(ECHO, message, extra=((b"grpc-encoding", encoding),))  # flag 0
    assert answer.grpc_status == 0 and answer.messages == [message]
    assert plain.grpc_status == 0 and plain.messages == [message]
    await assert_survives(bare)


@COMPRESSIONS
async def test_a_compressed_message_is_held_to_the_limit_once_inflated(
    bare: Bare, encoding: bytes, squeeze: Callable[[bytes], bytes]
) -> None:
    """Inflated to exactly max_message_bytes: answered; one byte more: RESOURCE_EXHAUSTED
    (the compressed frame itself is far below the limit either way)."""
    answers = []
    async with h2_peer(bare.path) as peer:
        for size in (LIMIT, LIMIT + 1):
            sid = peer.start(ECHO, extra=((b"grpc-encoding", encoding),))
            await peer.send_body(sid, grpc_frame(squeeze(b"z" * size), compressed=1))
            answers.append(await peer.finish(sid))
    assert answers[0].grpc_status == 0 and answers[0].messages == [b"z" * LIMIT]
    assert answers[1].grpc_status == 8 and not answers[1].data
    await assert_survives(bare)


@pytest.mark.parametrize(
    ("encoding", "body", "code"),
    [
        (b"snappy", grpc_frame(b"whatever", compressed=1), 12),
        (b"gzip", grpc_frame(gzip.compress(b"\0" * (LIMIT * 64)), compressed=1), 8),
        (b"deflate", grpc_frame(zlib.compress(b"\0" * (LIMIT + 1)), compressed=1), 8),
        (b"identity", grpc_frame(b"plain", compressed=1), 13),
        (None, grpc_frame(b"plain", compressed=1), 13),
        (b"gzip", grpc_frame(b"not gzip at all", compressed=1), 13),
        (b"gzip", grpc_frame(gzip.compress(b"cut short")[:-9], compressed=1), 13),
        (b"gzip", grpc_frame(b"x", compressed=2), 13),
    ],
    ids=[
        "unknown",
        "gzip bomb",
        "deflate one past",
        "flag with identity",
        "flag without encoding",
        "not gzip",
        "truncated",
        "flag 2",
    ],
)
async def test_bad_compression_gets_a_grpc_status(
    bare: Bare, encoding: bytes | None, body: bytes, code: int
) -> None:
    extra = () if encoding is None else ((b"grpc-encoding", encoding),)
    async with h2_peer(bare.path) as peer:
        sid = peer.start(ECHO, extra=extra)
        await peer.send_body(sid, body)
        answer = await peer.finish(sid)
    assert answer.grpc_status == code and not answer.data
    await assert_survives(bare)


async def test_grpc_message_is_percent_encoded(bare: Bare) -> None:
    async with h2_peer(bare.path) as peer:
        answer = await peer.call(
            HEALTH_CHECK, health_pb2.HealthCheckRequest(service="nöpe\n").SerializeToString()
        )
    assert answer.grpc_status == 5
    assert (
        answer.headers[b"grpc-message"].isascii()
        and b"n%C3%B6pe" in answer.headers[b"grpc-message"]
    )
    await assert_survives(bare)


async def test_a_failing_handler_is_unknown(bare: Bare) -> None:
    async with h2_peer(bare.path) as peer:
        answer = await peer.call(HEALTH_CHECK, b"\xff\xff\xff")  # not a HealthCheckRequest
    assert answer.grpc_status == 2
    await assert_survives(bare)


# --- 3. HTTP/2 framing ------------------------------------------------------------------------
def good_headers(peer: RawPeer, sid: int, path: str = ECHO) -> bytes:
    return frame(HEADERS, END_HEADERS, sid, peer.block(request_headers(path)))


@pytest.mark.parametrize(
    "preface",
    [b"GET / HTTP/1.1\r\nHost: pdp\r\n\r\n", PREFACE[:-1] + b"X" + settings_frame()],
    ids=["HTTP/1.1", "one byte off"],
)
async def test_a_bad_preface_is_a_protocol_error(bare: Bare, preface: bytes) -> None:
    async with raw_peer(bare.path, preface=preface) as peer:
        assert (await peer.goaway())[1] == PROTOCOL_ERROR
    await assert_survives(bare)


async def test_a_frame_above_16384_bytes_is_refused_from_its_header(bare: Bare) -> None:
    async with raw_peer(bare.path) as peer:
        peer.send(
            (16385).to_bytes(3, "big") + bytes((DATA, 0)) + (1).to_bytes(4, "big")
        )  # no payload
        assert (await peer.goaway())[1] == FRAME_SIZE_ERROR
    await assert_survives(bare)


@pytest.mark.parametrize(
    ("prelude", "sid"),
    [((), 0), ((), 2), ((5,), 3), ((1,), 1)],
    ids=["stream 0", "even stream", "lower than an open one", "reusing a finished one"],
)
async def test_headers_on_a_stream_a_client_may_not_open(
    bare: Bare, prelude: tuple[int, ...], sid: int
) -> None:
    async with raw_peer(bare.path) as peer:
        for earlier in prelude:
            peer.send(
                good_headers(peer, earlier), frame(DATA, END_STREAM, earlier, grpc_frame(b"first"))
            )
            assert (await peer.response(earlier)).messages == [b"first"]
        peer.send(good_headers(peer, sid))
        assert (await peer.goaway())[1] == PROTOCOL_ERROR
    await assert_survives(bare)


async def test_a_header_block_split_over_continuations_is_answered(bare: Bare) -> None:
    async with raw_peer(bare.path) as peer:
        block = peer.block(request_headers(extra=((b"x-pad", b"p" * 300),)))
        pieces = [block[i : i + 7] for i in range(0, len(block), 7)]
        peer.send(frame(HEADERS, 0, 1, pieces[0]))
        peer.send(*(frame(CONTINUATION, 0, 1, piece) for piece in pieces[1:-1]))
        peer.send(frame(CONTINUATION, END_HEADERS, 1, pieces[-1]))
        peer.send(frame(DATA, END_STREAM, 1, grpc_frame(b"continued")))
        answer = await peer.response(1)
        # END_STREAM on the HEADERS that opens a CONTINUATION chain counts too
        peer.send(frame(HEADERS, END_STREAM, 3, pieces[0]))
        peer.send(*(frame(CONTINUATION, 0, 3, piece) for piece in pieces[1:-1]))
        peer.send(frame(CONTINUATION, END_HEADERS, 3, pieces[-1]))
        empty = await peer.response(3)
    assert answer.messages == [b"continued"] and answer.trailers[b"grpc-status"] == b"0"
    assert empty.headers[b"grpc-status"] == b"13"  # ended without a message
    await assert_survives(bare)


@pytest.mark.parametrize(
    "interruption",
    [
        frame(DATA, END_STREAM, 1, grpc_frame(b"x")),
        frame(PING, 0, 0, b"12345678"),
        frame(CONTINUATION, END_HEADERS, 3, b""),
        frame(HEADERS, END_HEADERS, 3, b""),
    ],
    ids=["DATA", "PING", "CONTINUATION of another stream", "HEADERS"],
)
async def test_an_interrupted_header_block_is_a_protocol_error(
    bare: Bare, interruption: bytes
) -> None:
    async with raw_peer(bare.path) as peer:
        block = peer.block(request_headers())
        peer.send(frame(HEADERS, 0, 1, block[:5]), interruption)
        assert (await peer.goaway())[1] == PROTOCOL_ERROR
    await assert_survives(bare)


async def test_a_continuation_without_headers_is_a_protocol_error(bare: Bare) -> None:
    async with raw_peer(bare.path) as peer:
        peer.send(frame(CONTINUATION, END_HEADERS, 1, peer.block(request_headers())))
        assert (await peer.goaway())[1] == PROTOCOL_ERROR
    await assert_survives(bare)


async def test_padding_and_priority_are_stripped(bare: Bare) -> None:
    async with raw_peer(bare.path) as peer:
        block = peer.block(request_headers())
        priority = (0).to_bytes(4, "big") + b"\x10"
        peer.send(
            frame(
                HEADERS,
                END_HEADERS | PADDED | PRIORITY_FLAG,
                1,
                b"\x04" + priority + block + b"\0" * 4,
            )
        )
        message = grpc_frame(b"padded")
        peer.send(frame(DATA, PADDED, 1, b"\x03" + message[:4] + b"\0" * 3))
        peer.send(frame(DATA, PADDED | END_STREAM, 1, b"\x00" + message[4:]))
        answer = await peer.response(1)
        peer.send(frame(PRIORITY, 0, 3, priority), frame(PRIORITY, 0, 1, priority))  # ignored
        peer.send(
            frame(HEADERS, END_HEADERS | PRIORITY_FLAG, 3, priority + peer.block(request_headers()))
        )
        peer.send(frame(DATA, END_STREAM, 3, grpc_frame(b"prioritised")))
        second = await peer.response(3)
    assert answer.messages == [b"padded"] and second.messages == [b"prioritised"]
    await assert_survives(bare)


@pytest.mark.parametrize(
    "bad",
    [
        frame(HEADERS, END_HEADERS | PADDED, 1, b"\x05abcd"),
        frame(HEADERS, END_HEADERS | PADDED, 1, b""),
        "data",
    ],
    ids=["HEADERS pad >= frame", "HEADERS padded and empty", "DATA pad >= frame"],
)
async def test_padding_longer_than_the_frame_is_a_protocol_error(
    bare: Bare, bad: bytes | str
) -> None:
    async with raw_peer(bare.path) as peer:
        if bad == "data":
            peer.send(good_headers(peer, 1), frame(DATA, PADDED, 1, b"\x04abc"))
        else:
            peer.send(bad)  # type: ignore[arg-type]
        assert (await peer.goaway())[1] == PROTOCOL_ERROR
    await assert_survives(bare)


async def test_ping_is_answered_with_the_same_payload(bare: Bare) -> None:
    async with raw_peer(bare.path) as peer:
        peer.send(frame(PING, 0, 0, b"pingpong"), frame(PING, ACK, 0, b"ackedack"))
        while (got := await peer.next()) is not None and got.kind != PING:
            pass
        assert got is not None and got.flags == ACK and got.payload == b"pingpong"
        peer.send(frame(PING, 0, 0, b"short"))
        assert (await peer.goaway())[1] == FRAME_SIZE_ERROR
    assert sum(f.kind == PING for f in peer.seen) == 1  # the client's ACK is not answered
    await assert_survives(bare)


async def test_settings_are_acknowledged(bare: Bare) -> None:
    async with raw_peer(bare.path, preface=PREFACE) as peer:
        peer.send(settings_frame((0x1, 0), (0x5, 32768), (0x99, 7)))  # an unknown id is ignored
        server_settings = await peer.next()
        assert (
            server_settings is not None
            and server_settings.kind == SETTINGS
            and not server_settings.flags
        )
        while (got := await peer.next()) is not None and got.kind != SETTINGS:
            pass
        assert got is not None and got.flags == ACK and not got.payload
        peer.send(frame(SETTINGS, ACK, 0))  # our ACK of theirs: nothing comes back
        peer.send(good_headers(peer, 1), frame(DATA, END_STREAM, 1, grpc_frame(b"after settings")))
        assert (await peer.response(1)).messages == [b"after settings"]
    await assert_survives(bare)


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(SETTINGS, 0, 0, b"\x00\x04\x00\x00"), FRAME_SIZE_ERROR),
        (frame(SETTINGS, ACK, 0, b"\x00" * 6), FRAME_SIZE_ERROR),
        (frame(SETTINGS, 0, 1), PROTOCOL_ERROR),
        (settings_frame((0x4, 2**31)), FLOW_CONTROL_ERROR),
        (settings_frame((0x5, 16383)), PROTOCOL_ERROR),
        (settings_frame((0x5, 2**24)), PROTOCOL_ERROR),
        (frame(WINDOW_UPDATE, 0, 0, (0).to_bytes(4, "big")), PROTOCOL_ERROR),
        (frame(WINDOW_UPDATE, 0, 0, b"\x00\x01"), FRAME_SIZE_ERROR),
        (frame(WINDOW_UPDATE, 0, 0, (2**31 - 1).to_bytes(4, "big")), FLOW_CONTROL_ERROR),
        (frame(WINDOW_UPDATE, 0, 9, (1).to_bytes(4, "big")), PROTOCOL_ERROR),
        (frame(DATA, 0, 0, b"x"), PROTOCOL_ERROR),
        (frame(DATA, 0, 7, b"x"), PROTOCOL_ERROR),
        (frame(RST_STREAM, 0, 0, b"\0\0\0\0"), PROTOCOL_ERROR),
        (frame(RST_STREAM, 0, 7, b"\0\0\0\0"), PROTOCOL_ERROR),
        (frame(PRIORITY, 0, 0, b"\0" * 5), PROTOCOL_ERROR),
        (frame(GOAWAY, 0, 1, b"\0" * 8), PROTOCOL_ERROR),
        (frame(PING, 0, 1, b"\0" * 8), PROTOCOL_ERROR),
        (frame(PUSH_PROMISE, END_HEADERS, 1, b"\0\0\0\x02"), PROTOCOL_ERROR),
        (frame(RST_STREAM, 0, 1, b"\0\0\0"), FRAME_SIZE_ERROR),
        (frame(PRIORITY, 0, 1, b"\0" * 4), FRAME_SIZE_ERROR),
        (settings_frame((0x2, 2)), PROTOCOL_ERROR),
    ],
    ids=[
        "SETTINGS length 4",
        "SETTINGS ACK with payload",
        "SETTINGS on a stream",
        "initial window 2^31",
        "max frame below 16384",
        "max frame 2^24",
        "WINDOW_UPDATE 0",
        "WINDOW_UPDATE length 2",
        "connection window overflow",
        "WINDOW_UPDATE idle stream",
        "DATA stream 0",
        "DATA idle stream",
        "RST_STREAM stream 0",
        "RST_STREAM idle stream",
        "PRIORITY stream 0",
        "GOAWAY on a stream",
        "PING on a stream",
        "PUSH_PROMISE",
        "RST_STREAM length 3",
        "PRIORITY length 4",
        "ENABLE_PUSH 2",
    ],
)
async def test_connection_errors_end_in_goaway(bare: Bare, bad: bytes, code: int) -> None:
    async with raw_peer(bare.path) as peer:
        peer.send(bad)
        assert (await peer.goaway())[1] == code
    await assert_survives(bare)


@pytest.mark.parametrize(
    "block",
    [b"\xff\xff\xff\xff\xff", b"\x80", b"\x7f\xff\xff\xff\xff\x0f", b"\x00\x7f"],
    ids=["huge index", "index 0", "table index overflow", "cut literal"],
)
async def test_hpack_garbage_is_a_compression_error(bare: Bare, block: bytes) -> None:
    async with raw_peer(bare.path) as peer:
        peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
        assert (await peer.goaway())[1] == COMPRESSION_ERROR
    await assert_survives(bare)


async def test_a_header_list_above_the_limit_is_a_compression_error(bare: Bare) -> None:
    async with raw_peer(bare.path) as peer:
        block = peer.block(
            request_headers(extra=tuple((b"x-big-%d" % i, b"v" * 8000) for i in range(10)))
        )
        pieces = [block[i : i + 16000] for i in range(0, len(block), 16000)]
        peer.send(frame(HEADERS, END_HEADERS if len(pieces) == 1 else 0, 1, pieces[0]))
        for i, piece in enumerate(pieces[1:], 2):
            peer.send(frame(CONTINUATION, END_HEADERS if i == len(pieces) else 0, 1, piece))
        assert (await peer.goaway())[1] == COMPRESSION_ERROR
    await assert_survives(bare)


async def test_unknown_frame_types_and_client_goaway_are_ignored(bare: Bare) -> None:
    async with raw_peer(bare.path) as peer:
        peer.send(frame(0xFA, 0xFF, 0, b"whatever"), frame(0x0B, 0, 1, b"x" * 100))
        peer.send(good_headers(peer, 1), frame(0xFA, 0, 1, b"in between"))
        peer.send(frame(DATA, END_STREAM, 1, grpc_frame(b"unknown frames")))
        assert (await peer.response(1)).messages == [b"unknown frames"]
        peer.send(good_headers(peer, 3), frame(GOAWAY, 0, 0, (3).to_bytes(4, "big") + b"\0\0\0\0"))
        peer.send(frame(DATA, END_STREAM, 3, grpc_frame(b"after our goaway")))
        assert (await peer.response(3)).messages == [b"after our goaway"]
    await assert_survives(bare)


async def test_a_client_reset_mid_request_leaves_the_connection_usable(bare: Bare) -> None:
    async with h2_peer(bare.path) as peer:
        sid = peer.start(ECHO)
        await peer.send_body(sid, grpc_frame(b"half")[:6], end=False)
        waiting = peer.start(WAIT)
        await peer.send_body(waiting, grpc_frame(b"waiting"))
        async with asyncio.timeout(HANG):
            await bare.entered.wait()
        peer.conn.reset_stream(sid, 0x8)  # CANCEL
        peer.conn.reset_stream(waiting, 0x8)
        peer.flush()
        answer = await peer.call(ECHO, b"next")
        assert answer.messages == [b"next"]
        await settle(lambda: bare.server.open_calls() == 0)  # both reset calls are gone
        bare.release.set()  # the cancelled handler still runs to its end, its answer dropped
        assert (await peer.call(LATER, b"later")).messages == [b"later"]
    await assert_survives(bare)


async def test_data_and_trailers_after_the_answer_are_dropped(bare: Bare) -> None:
    async with raw_peer(bare.path) as peer:
        peer.send(good_headers(peer, 1, "/test.T/Nope"))
        answer = await peer.response(1)  # answered at once, the stream reset NO_ERROR
        peer.send(
            frame(DATA, 0, 1, b"late"),
            frame(HEADERS, END_HEADERS | END_STREAM, 1, peer.block([(b"x", b"y")])),
        )
        peer.send(good_headers(peer, 3), frame(DATA, END_STREAM, 3, grpc_frame(b"next")))
        assert (await peer.response(3)).messages == [b"next"]
    assert answer.headers[b"grpc-status"] == b"12"
    assert any(f.kind == RST_STREAM and f.sid == 1 and f.payload == bytes(4) for f in peer.seen)
    await assert_survives(bare)


async def test_data_after_end_stream_is_stream_closed(bare: Bare) -> None:
    async with raw_peer(bare.path) as peer:
        peer.send(good_headers(peer, 1, WAIT), frame(DATA, END_STREAM, 1, grpc_frame(b"w")))
        async with asyncio.timeout(HANG):
            await bare.entered.wait()
        peer.send(frame(DATA, 0, 1, b"more"))
        answer = await peer.response(1)
    assert answer.reset == STREAM_CLOSED
    bare.release.set()
    await assert_survives(bare)


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(WINDOW_UPDATE, 0, 1, bytes(4)), PROTOCOL_ERROR),
        (frame(WINDOW_UPDATE, 0, 1, (2**31 - 1).to_bytes(4, "big")), FLOW_CONTROL_ERROR),
        (frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x82"), STREAM_CLOSED),
    ],
    ids=["WINDOW_UPDATE 0", "stream window overflow", "trailers after END_STREAM"],
)
async def test_stream_errors_reset_only_their_stream(bare: Bare, bad: bytes, code: int) -> None:
    async with raw_peer(bare.path) as peer:
        peer.send(good_headers(peer, 1, WAIT), frame(DATA, END_STREAM, 1, grpc_frame(b"w")))
        async with asyncio.timeout(HANG):
            await bare.entered.wait()
        peer.send(bad)
        assert (await peer.response(1)).reset == code
        peer.send(good_headers(peer, 3), frame(DATA, END_STREAM, 3, grpc_frame(b"next")))
        assert (await peer.response(3)).messages == [b"next"]
        bare.release.set()  # the reset call's handler ends; its answer goes nowhere
    await assert_survives(bare)


BASE = request_headers()


@pytest.mark.parametrize(
    "headers",
    [
        [h for h in BASE if h[0] != b":path"],  # a required pseudo-header missing
        [h for h in BASE if h[0] != b":scheme"],
        [h for h in BASE if h[0] != b":method"],
        [*BASE[:1], *BASE],  # :method twice
        [*BASE, (b":path", b"/x")],  # a pseudo-header after regular fields
        [(b":protocol", b"websocket"), *BASE],  # not a request pseudo-header
        [*BASE, (b"Content-Length", b"1")],  # an upper-case name
        [*BASE, (b"connection", b"keep-alive")],  # connection-specific fields
        [*BASE, (b"transfer-encoding", b"chunked")],
        [*BASE, (b"upgrade", b"h2c")],
        [*BASE[:5], (b"te", b"gzip")],  # te other than trailers
    ],
    ids=[
        "no :path",
        "no :scheme",
        "no :method",
        "repeated :method",
        "late pseudo-header",
        "unknown pseudo-header",
        "upper-case name",
        "connection",
        "transfer-encoding",
        "upgrade",
        "te: gzip",
    ],
)
async def test_a_malformed_request_block_resets_only_its_stream(
    bare: Bare, headers: list[tuple[bytes, bytes]]
) -> None:
    """RFC 9113, 8.1.1: a malformed request is a stream error (PROTOCOL_ERROR); its handler
    never runs and the connection serves the next call."""
    async with raw_peer(bare.path) as peer:
        peer.send(
            frame(HEADERS, END_HEADERS, 1, peer.block(headers)),
            frame(DATA, END_STREAM, 1, grpc_frame(b"bad")),
        )
        assert (await peer.response(1)).reset == PROTOCOL_ERROR
        peer.send(good_headers(peer, 3), frame(DATA, END_STREAM, 3, grpc_frame(b"next")))
        assert (await peer.response(3)).messages == [b"next"]
    await assert_survives(bare)


async def test_a_connection_error_mid_call_leaves_no_call_and_the_handler_runs_on(
    bare: Bare,
) -> None:
    async with raw_peer(bare.path) as peer:
        peer.send(good_headers(peer, 1, WAIT), frame(DATA, END_STREAM, 1, grpc_frame(b"w")))
        async with asyncio.timeout(HANG):
            await bare.entered.wait()
        assert bare.server.open_calls() == 1
        peer.send(frame(PUSH_PROMISE, END_HEADERS, 1, bytes(4)))
        assert (await peer.goaway()) == (1, PROTOCOL_ERROR)
    await settle(lambda: bare.server.open_calls() == 0)
    bare.release.set()  # a check's handler (its replay claim) is not cut short by the client
    await settle(lambda: bare.finished == 1)
    await assert_survives(bare)


async def test_client_trailers_end_a_request(bare: Bare) -> None:
    async with raw_peer(bare.path) as peer:
        peer.send(good_headers(peer, 1), frame(DATA, 0, 1, grpc_frame(b"trailed")))
        peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, peer.block([(b"x-trailer", b"1")])))
        trailed = await peer.response(1)
        peer.send(good_headers(peer, 3), frame(DATA, 0, 3, grpc_frame(b"bad trailers")))
        peer.send(
            frame(HEADERS, END_HEADERS, 3, peer.block([(b"x-trailer", b"1")]))
        )  # no END_STREAM
        bad = await peer.response(3)
    assert trailed.messages == [b"trailed"] and bad.reset == PROTOCOL_ERROR
    await assert_survives(bare)


async def test_more_streams_than_allowed_are_refused(bare: Bare) -> None:
    async with raw_peer(bare.path) as peer:
        block = peer.block(request_headers())
        limit = 1000  # the server's SETTINGS_MAX_CONCURRENT_STREAMS
        peer.send(*(frame(HEADERS, END_HEADERS, 2 * i + 1, block) for i in range(limit + 1)))
        extra = 2 * limit + 1
        refused = await peer.response(extra)
        assert refused.reset == REFUSED_STREAM
        await settle(lambda: bare.server.open_calls() == limit)
        peer.send(frame(DATA, END_STREAM, 1, grpc_frame(b"one of many")))  # one finishes...
        assert (await peer.response(1)).messages == [b"one of many"]
        peer.send(
            good_headers(peer, extra + 2), frame(DATA, END_STREAM, extra + 2, grpc_frame(b"room"))
        )
        assert (await peer.response(extra + 2)).messages == [b"room"]  # ...and makes room
    await assert_survives(bare)
    limits = dict(
        (
            int.from_bytes(f.payload[i : i + 2], "big"),
            int.from_bytes(f.payload[i + 2 : i + 6], "big"),
        )
        for f in peer.seen[:1]
        for i in range(0, len(f.payload), 6)
    )
    assert limits[0x3] == limit


# --- 4. flow control ---------------------------------------------------------------------------
async def test_a_tiny_client_window_still_gets_the_whole_answer(start_bare: StartBare) -> None:
    """10 bytes of stream window, and the connection's (65,535, then 1,500 at a time) runs
    out mid-answer: the server sends only what the windows allow (h2 raises otherwise) and
    resumes on every WINDOW_UPDATE, byte-exact."""
    bare = await start_bare(max_message_bytes=100_000)
    message = bytes(range(256)) * 280  # 71,680 bytes: more than the connection window
    initial = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10}
    async with h2_peer(bare.path, initial) as peer:
        sid = peer.start(ECHO)
        await peer.send_body(sid, grpc_frame(message))
        stream_window, connection_window, updates = 10, 65_535, 0
        while not peer.responses[sid].ended:
            for event in await peer.pump(acknowledge=False):
                if not isinstance(event, h2.events.DataReceived):
                    continue
                stream_window -= len(event.data)
                connection_window -= len(event.data)
                grow = min(len(event.data) + 100, 1000 - stream_window)  # never shrinks
                if grow > 0 and not peer.responses[sid].ended:  # trailers may be in too
                    peer.conn.increment_flow_control_window(grow, sid)
                    stream_window += grow
                    updates += 1
                if connection_window == 0:
                    peer.conn.increment_flow_control_window(1500)
                    connection_window += 1500
                    updates += 1
            peer.flush()
        answer = peer.responses[sid]
    assert answer.data == grpc_frame(message) and answer.trailers[b"grpc-status"] == b"0"
    assert updates > 70  # the answer really waited for the windows, many times
    await assert_survives(bare)


async def test_a_window_shrunk_by_settings_holds_the_answer_until_it_grows(bare: Bare) -> None:
    async with h2_peer(bare.path, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}) as peer:
        sid = peer.start(ECHO)
        await peer.send_body(sid, grpc_frame(b"held back"))
        while not any(isinstance(e, h2.events.ResponseReceived) for e in peer.events):
            await peer.pump()
        peer.conn.ping(b"barrier!")  # answered after the server has read everything before it
        peer.flush()
        while not any(isinstance(e, h2.events.PingAckReceived) for e in peer.events):
            await peer.pump()
        assert not peer.responses[sid].data  # no window, no data
        peer.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 4})
        peer.flush()
        answer = await peer.finish(sid)
    assert answer.messages == [b"held back"]
    await assert_survives(bare)


async def test_a_body_in_one_byte_data_frames(bare: Bare) -> None:
    message = b"one byte at a time"
    async with h2_peer(bare.path) as peer:
        sid = peer.start(LATER)
        await peer.send_body(sid, grpc_frame(message), chunk=1)
        answer = await peer.finish(sid)
    assert answer.messages == [message]
    await assert_survives(bare)


async def test_a_body_larger_than_the_stream_window_is_received_whole(
    start_bare: StartBare,
) -> None:
    bare = await start_bare(max_message_bytes=3 << 20)
    message = bytes(range(251)) * ((5 << 19) // 251)  # ~2.5 MiB: beyond the 1 MiB window
    async with h2_peer(bare.path) as peer:
        answer = await peer.call(ECHO, message)
        updates = [
            e for e in peer.events if isinstance(e, h2.events.WindowUpdated) and e.stream_id == 1
        ]
    assert answer.messages == [message]
    assert updates  # without the server's WINDOW_UPDATEs h2 could not have sent it all
    await assert_survives(bare)


# --- 5. abuse: a peer that does not read, a client that resets at once --------------------
async def test_a_ping_flood_from_a_peer_that_never_reads_is_not_buffered(bare: Bare) -> None:
    """Every PING (or SETTINGS) asks for an answer; a peer that sends them and reads nothing
    must not make the server buffer answers without end: it stops reading that peer."""
    pings = frame(PING, 0, 0, b"floodfld") * 60_000  # ~1 MiB a write
    ceiling = 32 << 20  # sent without the server pushing back: the test fails
    async with raw_peer(bare.path) as peer:
        await settle(lambda: len(bare.server.connections) == 1)
        (connection,) = bare.server.connections
        transport = connection.transport
        assert transport is not None
        sent = 0

        async def flood() -> None:
            nonlocal sent
            while sent < ceiling:
                peer.send(pings)
                await peer.writer.drain()
                sent += len(pings)

        flooding = asyncio.create_task(flood())
        try:
            await settle(lambda: flooding.done() or not transport.is_reading())
            assert not transport.is_reading(), f"{sent} bytes of PINGs read, never paused"
            assert transport.get_write_buffer_size() < 4 << 20
        finally:
            flooding.cancel()
    await settle(lambda: connection not in bare.server.connections)  # seen gone, though paused
    await assert_survives(bare)


async def test_close_cuts_off_a_peer_that_never_reads(bare: Bare) -> None:
    """``close`` writes what is buffered and closes; a peer that reads nothing would keep the
    socket (and its buffer) open for ever, so it is aborted once ABORT_AFTER_SECONDS pass."""
    pings = frame(PING, 0, 0, b"floodfld") * 60_000
    async with raw_peer(bare.path) as peer:
        await settle(lambda: len(bare.server.connections) == 1)
        (connection,) = bare.server.connections
        transport = connection.transport
        assert transport is not None
        while transport.is_reading():  # until the server stops reading us (buffer full)
            peer.send(pings)
            await asyncio.sleep(0)
        assert transport.get_write_buffer_size() > 0
        await bare.server.close(0)
        await settle(lambda: connection not in bare.server.connections)  # connection_lost ran
        assert transport.is_closing()


async def test_rapid_resets_cannot_run_more_handlers_than_streams_allowed(bare: Bare) -> None:
    """A call the client resets still runs to its end (a check's replay claim), so it still
    counts against MAX_CONCURRENT_STREAMS: open-and-reset cannot start handlers without end."""
    limit = 1000
    async with raw_peer(bare.path) as peer:
        request = grpc_frame(b"reset")
        block = peer.block(request_headers(WAIT))
        for i in range(limit):
            sid = 2 * i + 1
            peer.send(
                frame(HEADERS, END_HEADERS, sid, block), frame(DATA, END_STREAM, sid, request)
            )
            peer.send(frame(RST_STREAM, 0, sid, (0x8).to_bytes(4, "big")))  # CANCEL
        probe = 2 * limit + 1
        peer.send(good_headers(peer, probe), frame(DATA, END_STREAM, probe, grpc_frame(b"probe")))
        assert (await peer.response(probe)).reset == REFUSED_STREAM
        assert bare.server.open_calls() == 0 and bare.finished == 0
        bare.release.set()
        await settle(lambda: bare.finished == limit)
        peer.send(
            good_headers(peer, probe + 2), frame(DATA, END_STREAM, probe + 2, grpc_frame(b"room"))
        )
        assert (await peer.response(probe + 2)).messages == [b"room"]
    await assert_survives(bare)


# --- 6. drain: close(grace) -------------------------------------------------------------------
async def test_close_lets_a_call_in_flight_finish_and_refuses_new_streams(bare: Bare) -> None:
    async with raw_peer(bare.path) as peer:
        peer.send(good_headers(peer, 1, WAIT), frame(DATA, END_STREAM, 1, grpc_frame(b"in flight")))
        async with asyncio.timeout(HANG):
            await bare.entered.wait()
        closing = asyncio.create_task(bare.server.close(HANG))
        while (got := await peer.next()) is not None and got.kind != GOAWAY:
            pass
        assert got is not None and got.payload[:8] == (1).to_bytes(4, "big") + bytes(4)
        peer.send(good_headers(peer, 3), frame(DATA, END_STREAM, 3, grpc_frame(b"too late")))
        assert (await peer.response(3)).reset == REFUSED_STREAM
        assert not closing.done()
        bare.release.set()
        answer = await peer.response(1)
        async with asyncio.timeout(HANG):
            await closing
        assert await peer.eof()
    assert answer.messages == [b"in flight"] and answer.trailers[b"grpc-status"] == b"0"
    assert bare.server.open_calls() == 0 and not bare.server.connections
    with pytest.raises(OSError):  # nothing listens any more
        await asyncio.open_unix_connection(bare.path)


async def test_close_cancels_a_watch_stream_after_the_grace(bare: Bare) -> None:
    async with raw_peer(bare.path) as peer:
        request = health_pb2.HealthCheckRequest(service="").SerializeToString()
        peer.send(
            good_headers(peer, 1, HEALTH_WATCH), frame(DATA, END_STREAM, 1, grpc_frame(request))
        )
        while (got := await peer.next()) is not None and got.kind != DATA:
            pass  # the first status is out: the stream is running
        first = got
        async with asyncio.timeout(HANG):
            await bare.server.close(0.05)
        rest = await peer.response(1)
        assert await peer.eof()
    assert first is not None
    assert health_pb2.HealthCheckResponse.FromString(grpc_messages(first.payload)[0]).status == (
        health_pb2.HealthCheckResponse.SERVING
    )
    assert rest.headers[b"grpc-status"] == b"1"  # CANCELLED, in the trailers
    assert bare.server.open_calls() == 0


async def test_a_connection_made_while_closing_gets_goaway(bare: Bare) -> None:
    async with raw_peer(bare.path) as peer:
        peer.send(frame(PING, 0, 0, b"accepted"))  # the server has made this connection
        while (got := await peer.next()) is not None and got.kind != PING:
            pass
        bare.server.closing = True  # what close() sets before it stops listening
        async with raw_peer(bare.path) as late:
            late.send(good_headers(late, 1), frame(DATA, END_STREAM, 1, grpc_frame(b"late")))
            refused = await late.response(1)
        bare.server.closing = False
        peer.send(good_headers(peer, 1), frame(DATA, END_STREAM, 1, grpc_frame(b"early")))
        assert (await peer.response(1)).messages == [b"early"]
    assert refused.reset == REFUSED_STREAM
    assert any(f.kind == GOAWAY for f in late.seen)
    await assert_survives(bare)


# --- 7. fuzzing data_received -----------------------------------------------------------------
def fuzz_server() -> H2GrpcServer:
    """Synchronous handlers only: the fuzz test runs without an event loop."""
    server = H2GrpcServer(max_message_bytes=LIMIT)
    server.add_unary(ECHO, lambda message, headers: message)

    def fail(message: bytes, headers: Any) -> bytes:
        raise RuntimeError("a handler bug")

    server.add_unary("/test.T/Fail", fail)
    return server


def good_call_bytes(encoder: hpack.Encoder, sid: int = 1) -> bytes:
    return frame(HEADERS, END_HEADERS, sid, encoder.encode(request_headers())) + frame(
        DATA, END_STREAM, sid, grpc_frame(b"good")
    )


_encoder = hpack.Encoder()
_blocks = [
    _encoder.encode(request_headers(path)) for path in (ECHO, "/test.T/Fail", "/test.T/Nope")
] + [hpack.Encoder().encode(request_headers(method=b"GET")), b"\x82\x86\x84"]

frames = st.builds(
    frame,
    st.sampled_from(
        [
            DATA,
            HEADERS,
            PRIORITY,
            RST_STREAM,
            SETTINGS,
            PUSH_PROMISE,
            PING,
            GOAWAY,
            WINDOW_UPDATE,
            CONTINUATION,
            0x0A,
            0xFA,
        ]
    ),
    st.integers(0, 255),
    st.sampled_from([0, 1, 2, 3, 5, 7, 0x7FFFFFFF]),
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from(_blocks),
        st.sampled_from(
            [
                grpc_frame(b"m"),
                grpc_frame(b"m" * (LIMIT + 1)),
                b"\x00\x00\x00\x00\x01",
                bytes(4),
                bytes(8),
                bytes(6),
            ]
        ),
    ),
)
chunks = st.one_of(frames, st.binary(min_size=1, max_size=60))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(chunks, max_size=12), st.integers(1, 64))
def test_random_frames_never_raise_out_of_data_received(pieces: list[bytes], split: int) -> None:
    server = fuzz_server()
    transport = RecordingTransport()
    connection = _Connection(server)
    connection.connection_made(transport)  # type: ignore[arg-type]
    stream = PREFACE + settings_frame() + b"".join(pieces)
    for at in range(0, len(stream), split):  # and in arbitrary read sizes
        connection.data_received(stream[at : at + split])
    written = parse_frames(bytes(transport.written))
    assert written[0].kind == SETTINGS
    if transport.closed:  # an error: it said why, with a GOAWAY, and closed
        assert written[-1].kind == GOAWAY
    connection.connection_lost(None)
    assert not server.connections and server.open_calls() == 0
    # the server itself is unharmed: a new connection is answered
    good = RecordingTransport()
    fresh = _Connection(server)
    fresh.connection_made(good)  # type: ignore[arg-type]
    fresh.data_received(PREFACE + settings_frame() + good_call_bytes(hpack.Encoder()))
    answer = [f for f in parse_frames(bytes(good.written)) if f.sid == 1]
    assert [f.kind for f in answer] == [HEADERS, DATA, HEADERS]
    assert grpc_messages(answer[1].payload) == [b"good"] and not good.closed
    fresh.connection_lost(None)
    assert server.open_calls() == 0


async def test_random_bytes_on_a_real_socket_then_a_good_call(bare: Bare) -> None:
    """The real-socket twin of the fuzz test, for a few fixed hostile byte strings."""
    for junk in (
        bytes(range(256)) * 4,
        b"\x00" * 9 + b"\xff" * 40,
        frame(HEADERS, 0xFF, 1, b"\xff" * 30),
    ):
        async with raw_peer(bare.path) as peer:
            peer.send(junk)
            code = (await peer.goaway())[1]
            assert code in (PROTOCOL_ERROR, FRAME_SIZE_ERROR, COMPRESSION_ERROR)
    await assert_survives(bare)


# --- 7. the HPACK memo (``MemoHeaders``) against plain decoding ----------------------------
_NAMES = st.sampled_from(
    [b":method", b":path", b"content-type", b"te", b"grpc-timeout", b"x-request-id", b"x-a"]
)
_VALUES = st.binary(min_size=0, max_size=40) | st.sampled_from([b"POST", b"200m", b"trailers"])
_FIELD = st.tuples(_NAMES, _VALUES, st.booleans())  # (name, value, never indexed)
# one block: its fields, Huffman or not, and a table size to set before it (None: keep)
_BLOCK = st.tuples(
    st.lists(_FIELD, max_size=8), st.booleans(), st.none() | st.sampled_from([0, 64, 256, 4096])
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_BLOCK, st.integers(0, 3)), min_size=1, max_size=12))
def test_the_hpack_memo_decodes_what_plain_hpack_decodes(
    blocks: list[tuple[tuple[list[tuple[bytes, bytes, bool]], bool, int | None], int]],
) -> None:
    """An encoder's blocks, each repeated (Envoy's case: the same block for every call), some
    indexing new fields, some never indexed, some after a table size update, decoded by both:
    the same headers in the same order, block after block."""
    encoder = hpack.Encoder()
    plain, memo = PlainHeaders(), MemoHeaders()
    for (fields, huffman, table_size), repeats in blocks:
        if table_size is not None:
            encoder.header_table_size = table_size
        headers = [
            hpack.NeverIndexedHeaderTuple(n, v) if never else (n, v) for n, v, never in fields
        ]
        for _ in range(1 + repeats):
            block = encoder.encode(headers, huffman=huffman)
            assert list(memo.decode(block)) == list(plain.decode(block))


def test_envoys_repeated_block_is_decoded_once() -> None:
    """The memo is used: Envoy's block, once all its fields are in the table, is decoded by
    hpack once and then answered from the memo."""
    encoder = hpack.Encoder()
    memo = MemoHeaders()
    calls = 0
    decode = memo.hpack.decode

    def counted(block: bytes, raw: bool = False) -> Any:
        nonlocal calls
        calls += 1
        return decode(block, raw=raw)

    memo.hpack.decode = counted  # type: ignore[method-assign]
    headers = request_headers()
    blocks = [encoder.encode(headers) for _ in range(10)]
    assert not _leaves_table_alone(blocks[0])  # the first one indexes its fields
    assert len(set(blocks[1:])) == 1 and _leaves_table_alone(blocks[1])
    for block in blocks:
        assert [tuple(h) for h in memo.decode(block)] == headers
    assert calls == 2  # the indexing block and the first repeat; eight from the memo


def test_the_same_block_after_the_table_changed_is_decoded_again() -> None:
    """One byte, ``\\xbe`` (dynamic index 62), means the newest table entry: x-a before a
    block that indexes x-b, x-b after it. The remembered meaning must not outlive the table."""
    encoder = hpack.Encoder()
    memo = MemoHeaders()
    memo.decode(encoder.encode([(b"x-a", b"1")]))  # x-a enters the table at index 62
    assert list(memo.decode(b"\xbe")) == [(b"x-a", b"1")]
    assert list(memo.decode(b"\xbe")) == [(b"x-a", b"1")]  # from the memo
    memo.decode(encoder.encode([(b"x-b", b"2")]))  # x-b at 62, x-a moves to 63
    assert list(memo.decode(b"\xbe")) == [(b"x-b", b"2")]
    assert list(memo.decode(b"\xbf")) == [(b"x-a", b"1")]


@pytest.mark.parametrize(
    ("block", "alone"),
    [
        (b"\x82\x86\x84", True),  # indexed fields only
        (b"\x82\x04\x02/x", True),  # a literal without indexing, indexed name
        (b"\x10\x01a\x01b", True),  # never indexed, new name
        (b"\x00\x7f\x01" + b"n" * 128 + b"\x00", True),  # a name of 128 bytes (two-byte length)
        (b"\x82\x41\x01a", False),  # a literal with incremental indexing
        (b"\x20\x82", False),  # a table size update
        (b"\x04\x05ab", False),  # a value cut short
        (b"\xff", False),  # an index cut short
    ],
)
def test_which_blocks_leave_the_table_alone(block: bytes, alone: bool) -> None:
    assert _leaves_table_alone(block) is alone
