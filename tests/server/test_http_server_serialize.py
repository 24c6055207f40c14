"""``serialize`` (the server's answer bytes, cached lines, one encode) makes exactly what the
one-part-per-line reference ``serialize_plain`` makes."""

from __future__ import annotations

import itertools

import pytest

from extauthz._http import HttpOut
from extauthz.server import http_server
from extauthz.server.http_server import serialize, serialize_plain

OUTS = [
    HttpOut(200),
    HttpOut(200, b"", None, (("x-contractshield-decision", "ALLOW"), ("x-a", "b"))),
    HttpOut(403, b'{"error":"x"}', "application/json", (("x-contractshield-decision", "BLOCK"),)),
    HttpOut(405, headers=(("allow", "POST"),)),
    HttpOut(799, b"odd status", "text/plain"),  # not in the reason table
    HttpOut(200, b"x" * 70000, "application/octet-stream"),
    HttpOut(200, b"", ""),  # an empty content type writes no line
    HttpOut(200, b"ok", "text/plain; charset=utf-8", (("x-u", "caf\u00e9 \u2603"),)),
    HttpOut(200, b"ok", None, (("x-s", "lone \udc80 surrogate"), ("x-e", ""))),
]


@pytest.mark.parametrize("out", OUTS)
def test_serialize_is_the_plain_one(out: HttpOut) -> None:
    for keep_alive, head in itertools.product((True, False), repeat=2):
        for _ in range(2):  # a second time from the caches
            fast = serialize(out, keep_alive=keep_alive, head=head)
            plain = serialize_plain(out, keep_alive=keep_alive, head=head)
            if fast != plain:  # a second boundary between the two: the date line differs
                fast = serialize(out, keep_alive=keep_alive, head=head)
            assert fast == plain


def test_serialize_refuses_what_the_plain_one_refuses() -> None:
    out = HttpOut(200, b"", "text/\udc80")  # a content type that is not UTF-8
    with pytest.raises(UnicodeEncodeError):
        serialize_plain(out, keep_alive=True)
    with pytest.raises(UnicodeEncodeError):
        serialize(out, keep_alive=True)


def test_the_line_caches_stay_bounded() -> None:
    for n in range(http_server._LINES_CACHED + 50):
        out = HttpOut(200, b"x" * n, f"text/t{n}")
        assert serialize(out, keep_alive=True) == serialize_plain(out, keep_alive=True) or (
            serialize(out, keep_alive=True) == serialize_plain(out, keep_alive=True)
        )
    assert len(http_server._LENGTH_LINES) <= http_server._LINES_CACHED
    assert len(http_server._CONTENT_TYPE_LINES) <= http_server._LINES_CACHED
