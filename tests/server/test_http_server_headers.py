"""The HTTP server's header names come from a bounded cache (``header_name``): the request's
headers are exactly what decoding each header (latin-1 name lower-cased, UTF-8 value with
replacement, repeats comma-joined in order) makes, cached or not."""

from __future__ import annotations

import random

import httptools
import pytest

from extauthz._http import HttpIn, HttpOut
from extauthz.server import http_server
from extauthz.server.http_server import HttpServer, _Connection, header_name
from tests._transport import NullTransport


def plain(pairs: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The reference: every header decoded on its own."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        key = name.decode("latin-1").lower()
        text = value.decode("utf-8", "replace")
        headers[key] = f"{headers[key]},{text}" if key in headers else text
    return headers


class _Recorder:
    """What llhttp hands a protocol: the raw (name, value) pairs."""

    def __init__(self) -> None:
        self.pairs: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.pairs.append((name, value))


def served(raw: bytes) -> list[HttpIn]:
    seen: list[HttpIn] = []

    def handler(request: HttpIn) -> HttpOut:
        seen.append(request)
        return HttpOut(200)

    conn = _Connection(HttpServer(handler, max_body_bytes=100))
    conn.connection_made(NullTransport())  # type: ignore[arg-type]
    conn.data_received(raw)
    return seen


HEADS = [
    b"Host: h\r\nX-Request-Id: r\r\nContent-Length: 2\r\n",
    b"Accept: a\r\naccept: b\r\nX-Obs: caf\xc3\xa9 \xff\r\nContent-Length: 2\r\n",
    b"x-jwt-payload: eyJzdWIiOiJhIn0\r\nX-A: 1\r\nx-a: 2\r\nX-A: 3\r\nContent-Length: 2\r\n",
    b"Content-Length: 2\r\nX-Empty:\r\nX-Space:   \r\nX-Bad: \xe2\x82\r\n",
]


@pytest.mark.parametrize("head", HEADS)
def test_the_server_decodes_what_llhttp_parsed_as_the_plain_loop(head: bytes) -> None:
    raw = b"POST /p?q=1 HTTP/1.1\r\n" + head + b"\r\nok"
    recorder = _Recorder()
    httptools.HttpRequestParser(recorder).feed_data(raw)
    expected = plain(recorder.pairs)
    seen = served(raw * 3)  # the first from a cold cache, then from the cache
    assert len(seen) == 3
    for request in seen:
        assert request.headers == expected and list(request.headers) == list(expected)
        assert (request.method, request.path, request.query, request.body) == (
            "POST",
            "/p",
            "q=1",
            b"ok",
        )


def test_header_names_cached_or_not_are_the_decoded_name_and_the_cache_is_bounded() -> None:
    rng = random.Random(29)
    names = [bytes(rng.choices(b"aAzZ-_09\xc0\xde\xe9", k=rng.randint(1, 12))) for _ in range(3000)]
    for raw in names + names[:100]:
        assert header_name(raw) == raw.decode("latin-1").lower()
        assert len(http_server._HEADER_NAMES) <= http_server.HEADER_NAMES_CACHED
    for raw, name in http_server._HEADER_NAMES.items():
        assert name == raw.decode("latin-1").lower()


def test_pipelined_messages_carry_nothing_over() -> None:
    """Each message starts from a clean state (there is no ``on_message_begin`` reset): the
    second request has its own url, headers and body only, the third (chunked) too."""
    first = b"POST /a?x=1 HTTP/1.1\r\nX-One: 1\r\nContent-Length: 3\r\n\r\nabc"
    second = b"GET /b HTTP/1.1\r\nX-Two: 2\r\n\r\n"
    third = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    one, two, three = served(first + second + third)
    assert (one.path, one.query, one.headers, one.body) == (
        "/a",
        "x=1",
        {"x-one": "1", "content-length": "3"},
        b"abc",
    )
    assert (two.method, two.path, two.query, two.headers, two.body) == (
        "GET",
        "/b",
        "",
        {"x-two": "2"},
        b"",
    )
    assert (three.path, three.headers, three.body) == (
        "/c",
        {"transfer-encoding": "chunked"},
        b"hi",
    )
