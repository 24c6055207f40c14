"""The HTTP server machinery over real sockets: keep-alive, pipelining, limits, refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import pytest

from extauthz._http import HttpIn, HttpOut
from extauthz.server.http_server import HttpServer

LIMIT = 1000


async def _slow(request: HttpIn) -> HttpOut:
    await asyncio.sleep(0.05)
    return HttpOut(200, b"slow:" + request.body, "text/plain")


def handler(request: HttpIn) -> HttpOut | Awaitable[HttpOut]:
    if request.path == "/slow":
        return _slow(request)  # answered later: a pipelined request after it must wait
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    text = f"{request.method} {request.path} q={request.query} body={request.body.decode()}"
    return HttpOut(
        200,
        text.encode(),
        "text/plain",
        (("x-seen-te", request.headers.get("transfer-encoding", "")),),
    )


@pytest.fixture
async def server() -> AsyncIterator[tuple[HttpServer, int]]:
    srv = HttpServer(handler, max_body_bytes=LIMIT, max_header_bytes=2000)
    port = await srv.listen_tcp("127.0.0.1", 0)
    yield srv, port
    await srv.close(0.5)


async def exchange(port: int, data: bytes, *, until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        if until_close:
            return await asyncio.wait_for(reader.read(-1), 5)
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


def answers(raw: bytes) -> list[tuple[int, bytes, dict[str, str]]]:
    """Split a byte stream into (status, body, headers) by content-length."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        n = int(headers.get("content-length", "0"))
        out.append((status, rest[:n], headers))
        raw = rest[n:]
    return out


async def test_keep_alive_and_pipelining_keep_order(server) -> None:  # type: ignore[no-untyped-def]
    _, port = server
    raw = await exchange(
        port,
        b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"
        b"GET /fast?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    got = answers(raw)
    assert [body for _, body, _ in got] == [
        b"slow:a",
        b"GET /fast q=x=1 body=",
        b"GET /last q= body=",
    ]
    assert "connection" not in got[0][2] and got[2][2]["connection"] == "close"


async def test_chunked_body_is_reassembled(server) -> None:  # type: ignore[no-untyped-def]
    _, port = server
    raw = await exchange(
        port,
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    [(status, body, headers)] = answers(raw)
    assert status == 200 and body == b"POST /c q= body=abcde" and headers["x-seen-te"] == "chunked"


async def test_declared_oversize_is_413_before_reading_the_body(server) -> None:  # type: ignore[no-untyped-def]
    _, port = server
    raw = await exchange(port, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
    [(status, body, headers)] = answers(raw)
    assert status == 413 and b"too large" in body and headers["connection"] == "close"


async def test_chunked_oversize_is_413(server) -> None:  # type: ignore[no-untyped-def]
    _, port = server
    chunk = b"3e8\r\n" + b"a" * 1000 + b"\r\n"
    raw = await exchange(
        port, b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + chunk
    )
    assert answers(raw)[0][0] == 413


async def test_head_too_large_is_431_and_garbage_is_400(server) -> None:  # type: ignore[no-untyped-def]
    _, port = server
    raw = await exchange(port, b"GET /x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n")
    assert answers(raw)[0][0] == 431
    raw = await exchange(port, b"\x00\x01 not http at all\r\n\r\n")
    assert answers(raw)[0][0] == 400


async def test_expect_100_continue_then_answer(server) -> None:  # type: ignore[no-untyped-def]
    _, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    writer.write(b"ok")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()


async def test_head_has_no_body_and_http10_closes(server) -> None:  # type: ignore[no-untyped-def]
    _, port = server
    raw = await exchange(port, b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"content-length: 16" in head and rest == b""
    raw = await exchange(port, b"GET /old HTTP/1.0\r\n\r\n")  # server closes: read(-1) returns
    assert answers(raw)[0][1] == b"GET /old q= body="


async def test_handler_failure_is_a_500_and_the_connection_lives(server) -> None:  # type: ignore[no-untyped-def]
    _, port = server
    raw = await exchange(
        port,
        b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    got = answers(raw)
    assert got[0][0] == 500 and got[1][1] == b"GET /after q= body="


async def test_close_lets_a_busy_answer_finish(server) -> None:  # type: ignore[no-untyped-def]
    srv, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz")
    await writer.drain()
    await asyncio.sleep(0.01)
    closing = asyncio.ensure_future(srv.close(2.0))
    raw = await asyncio.wait_for(reader.read(-1), 5)
    await closing
    [(status, body, headers)] = answers(raw)
    assert status == 200 and body == b"slow:z" and headers["connection"] == "close"
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_idle_keep_alive_connections_are_closed() -> None:
    srv = HttpServer(handler, max_body_bytes=LIMIT, keepalive_timeout=0.2)
    port = await srv.listen_tcp("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(-1), 5)  # returns once the server closes
        assert answers(raw)[0][0] == 200
        writer.close()
    finally:
        await srv.close(0)
