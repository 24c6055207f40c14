"""CPU per unary call of the built-in gRPC server's HTTP/2 layer, in-process, no sockets.

The server's half of a call (``server/h2_server.py``): the client's frames for one
``Authorization/Check`` (HEADERS with the headers Envoy's ext_authz client sends, one DATA
frame with a 900-byte message; ``--vary`` adds a header whose value changes per call, which
defeats the HPACK memo) fed to a connection's ``data_received``, the answer's frames
(HEADERS, DATA, trailers) built and written to a transport that keeps them. The handler
returns a constant 120-byte answer, so only the transport is timed. The requests are produced
beforehand by the ``h2`` library as the client (a dev dependency), against a second server
connection whose answers it reads, so HPACK's dynamic table and the flow-control windows
evolve as on a real connection. Best and median of ``--rounds``.

``--h2-library`` times the same requests through a connection built on the ``h2`` library's
server state machine (the first version of the built-in server), for the comparison in
docs/deployment.md ("gRPC server").

Run: ``.venv/bin/python bench/grpc_transport_bench.py [--n 8000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402

from extauthz.server import h2_server  # noqa: E402
from tests._transport import RecordingTransport  # noqa: E402

PATH = b"/envoy.service.auth.v3.Authorization/Check"
ANSWER = b"\x0a\x00" * 60
MESSAGE = b"\x00" + (900).to_bytes(4, "big") + b"x" * 900


VARY = False  # --vary: a header that changes per call (no block repeats)


def envoy_headers(n: int) -> list[tuple[bytes, bytes]]:
    """What Envoy 1.36's ext_authz gRPC client sends, captured (the same for every call)."""
    headers = [
        (b":method", b"POST"),
        (b":path", PATH),
        (b":authority", b"contractshield"),
        (b":scheme", b"http"),
        (b"te", b"trailers"),
        (b"grpc-timeout", b"200m"),
        (b"content-type", b"application/grpc"),
        (b"x-envoy-internal", b"true"),
        (b"x-forwarded-for", b"192.0.2.2"),
        (b"x-envoy-expected-rq-timeout-ms", b"200"),
    ]
    if VARY:
        headers.append((b"x-request-id", str(n * 7919).encode()))
    return headers


def server() -> h2_server.H2GrpcServer:
    s = h2_server.H2GrpcServer(max_message_bytes=8 << 20)
    s.add_unary(PATH.decode(), lambda message, headers: ANSWER)
    return s


def record(n: int) -> tuple[bytes, list[bytes]]:
    """The client's preface and the bytes of ``n`` calls, answered by a recording server."""
    rec, rec_out = h2_server._Connection(server()), RecordingTransport()
    rec.connection_made(rec_out)  # type: ignore[arg-type]
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    client.receive_data(rec_out.take())
    preface = client.data_to_send()
    rec.data_received(preface)
    client.receive_data(rec_out.take())
    preface += client.data_to_send()
    calls = []
    for i in range(n):
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, envoy_headers(i))
        client.send_data(sid, MESSAGE, end_stream=True)
        data = client.data_to_send()
        calls.append(data)
        rec.data_received(data)
        for event in client.receive_data(rec_out.take()):
            if isinstance(event, h2.events.DataReceived):
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        acks = client.data_to_send()  # the client's WINDOW_UPDATEs, after the answer
        rec.data_received(acks)
        calls[-1] += acks
    return preface, calls


class H2LibraryConnection:
    """The same calls on the ``h2`` library's server state machine (no-op handler)."""

    def __init__(self, out: RecordingTransport) -> None:
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self.out = out
        self.bodies: dict[int, bytearray] = {}

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                self.bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                sid = event.stream_id
                self.bodies.pop(sid, None)
                conn.send_headers(
                    sid, [(b":status", b"200"), (b"content-type", b"application/grpc")]
                )
                conn.send_data(sid, b"\x00" + len(ANSWER).to_bytes(4, "big") + ANSWER)
                conn.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
        self.out.write(conn.data_to_send())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--h2-library", action="store_true")
    parser.add_argument(
        "--vary", action="store_true", help="a header that changes per call: the memo misses"
    )
    parser.add_argument(
        "--plain-hpack", action="store_true", help="decode every block (h2_server.HPACK_MEMO off)"
    )
    args = parser.parse_args()
    global VARY
    VARY = args.vary
    h2_server.HPACK_MEMO = not args.plain_hpack
    results: dict[str, list[float]] = {"built-in (h2_server)": []}
    if args.h2_library:
        results["h2 library state machine"] = []
    for _ in range(args.rounds):
        preface, calls = record(args.n)
        for name, times in results.items():
            out = RecordingTransport()
            conn: h2_server._Connection | H2LibraryConnection
            if name.startswith("built-in"):
                conn = h2_server._Connection(server())
                conn.connection_made(out)  # type: ignore[arg-type]
            else:
                conn = H2LibraryConnection(out)
            conn.data_received(preface)
            out.take()
            started = time.perf_counter()
            for data in calls:
                conn.data_received(data)
            times.append((time.perf_counter() - started) / args.n * 1e6)
            if isinstance(conn, h2_server._Connection):
                assert not conn.calls, "every call answered"
    for name, times in results.items():
        print(f"{name:<28} best {min(times):6.1f} µs/call  median {statistics.median(times):6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
