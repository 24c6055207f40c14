"""Issue 24 classes 1-3 through a real Envoy, in both ext_authz modes: what reaches the upstream.

1. A body's label is not its truth: JSON-looking bytes under ``text/plain``, no label or a form
   label (BOM, UTF-16/32, repeated keys, ``NaN``, trailing values), JSON text as a form key,
   gzip/deflate bodies; every one is inspected, or refused.
2. Partial bodies at the limit, with the configs ``extauthz envoy-config`` renders
   (``max_request_bytes`` = ``maxBodyBytes`` + 1): limit - 1 and limit arrive whole and reach
   the upstream byte for byte; limit + 1 never does; with and without content-length
   (chunked), JSON, form and text.
3. Repeated keys: every value of a repeated form, multipart or JSON key goes through the
   detectors; a route whose contract reads the body refuses them (400).

Each case asserts the status and what the echo upstream received (its count, and the SHA-256 of
the body it got), and the two modes must decide alike (``test_both_modes_decide_alike``);
40 generated dresses per mode (hypothesis) never reach the upstream either.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from _e2e_support import Stack, run_stack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LIMIT = 1_048_576  # the default maxBodyBytes, and the rendered configs' default (+1 in Envoy)

POLICY = """\
policyVersion: "0.1"
name: e2e-hostile-bodies
defaults:
  mode: enforce
  unmatchedRouteAction: block
  vulnerabilityChecks:
    prototypePollution: true
    nosqlInjection: true
    xss: true
    sqlInjection: true
    commandInjection: true
    pathTraversal: true
    ssrfInternal: true
routes:
  - id: open                 # no contract: detectors only
    match: {method: POST, path: /open}
  - id: quiet                # no detectors either: only the size limit applies
    match: {method: POST, path: /quiet}
    vulnerability: {prototypePollution: false, nosqlInjection: false, xss: false,
                    sqlInjection: false, commandInjection: false, pathTraversal: false,
                    ssrfInternal: false}
  - id: transfer             # a contract reads the body
    match: {method: POST, path: /transfer}
    contract:
      requestSchema:
        type: object
        required: [to, amount]
        properties:
          to: {type: string, maxLength: 32}
          amount: {type: number, minimum: 1, maximum: 100}
"""

_RESULTS: dict[tuple[str, str], tuple[int, bool]] = {}  # (mode, case) -> (status, reached)


@pytest.fixture(scope="module", params=["grpc", "http"], ids=["grpc-mode", "http-mode"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy.write_text(POLICY)
    yield from run_stack(tcp=False, mode=request.param, policy=policy)


def send(
    stack: Stack,
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    chunked: bool = False,
) -> tuple[int, dict[str, Any] | None]:
    """POST ``body``; (status, the echo's JSON when the upstream answered)."""
    host, port = stack.url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        hdrs = dict(headers or {})
        if chunked:
            step = 65_536
            chunks = [body[i : i + step] for i in range(0, len(body), step)]
            conn.request("POST", path, body=iter(chunks), headers=hdrs, encode_chunked=True)
        else:
            conn.request("POST", path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        echo = None
        if resp.status == 200:
            echo = json.loads(data)
        return resp.status, echo
    finally:
        conn.close()


def check(
    stack: Stack,
    name: str,
    path: str,
    body: bytes,
    status: int,
    headers: dict[str, str] | None = None,
    *,
    chunked: bool = False,
    upstream_reads: bytes | None = None,
) -> None:
    """Send, and prove what reached the upstream: the exact bytes when allowed (as the upstream
    reads them: ``upstream_reads`` when it decodes a Content-Encoding), nothing else."""
    before = stack.upstream.count
    got, echo = send(stack, path, body, headers, chunked=chunked)
    reached = stack.upstream.count - before
    _RESULTS[(stack.mode, name)] = (got, bool(reached))
    assert got == status, (name, got, echo)
    if status == 200:
        assert reached == 1 and echo is not None
        read = body if upstream_reads is None else upstream_reads
        assert echo["bodyBytes"] == len(read), name
        assert echo["bodySha256"] == hashlib.sha256(read).hexdigest(), name
    else:
        assert reached == 0, f"{name}: a refused request reached the upstream"


# --- class 2: the boundary, exactly ---------------------------------------------------------


def _sized(kind: str, size: int) -> tuple[bytes, str]:
    if kind == "json":
        head, tail = b'{"a":"', b'"}'
        return head + b"x" * (size - len(head) - len(tail)) + tail, "application/json"
    if kind == "form":
        return b"a=" + b"x" * (size - 2), "application/x-www-form-urlencoded"
    return b"x" * size, "text/plain"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("kind", ["json", "form", "text"])
@pytest.mark.parametrize("delta", [-1, 0, 1], ids=["limit-1", "limit", "limit+1"])
def test_the_body_limit_holds_exactly(stack: Stack, kind: str, delta: int, chunked: bool) -> None:
    body, content_type = _sized(kind, LIMIT + delta)
    name = f"boundary-{kind}-{delta}-{'chunked' if chunked else 'cl'}"
    check(
        stack,
        name,
        "/quiet",
        body,
        200 if delta <= 0 else 413,
        {"content-type": content_type},
        chunked=chunked,
    )


def test_a_payload_past_the_limit_never_reaches_the_upstream(stack: Stack) -> None:
    """The issue's case: a chunked body over the limit whose tail carries the payload."""
    body = b'{"a":"' + b"x" * LIMIT + b'","__proto__":{"admin":true}}'
    for chunked in (False, True):
        check(
            stack,
            f"tail-payload-{chunked}",
            "/open",
            body,
            413,
            {"content-type": "application/json"},
            chunked=chunked,
        )


# --- class 1: a body's label is not its truth -------------------------------------------------

NOSQL = b'{"user":"alice","pass":{"$ne":null}}'
PROTO = b'{"__proto__":{"admin":true}}'

LABELS: list[tuple[str, bytes, dict[str, str]]] = [
    ("text-plain", NOSQL, {"content-type": "text/plain"}),
    ("no-label", NOSQL, {}),
    ("octet-stream", PROTO, {"content-type": "application/octet-stream"}),
    ("form-label-raw-json", NOSQL, {"content-type": "application/x-www-form-urlencoded"}),
    ("bom-text-plain", b"\xef\xbb\xbf" + NOSQL, {"content-type": "text/plain"}),
    ("bom-json", b"\xef\xbb\xbf" + NOSQL, {"content-type": "application/json"}),
    ("utf16-bom", NOSQL.decode().encode("utf-16"), {"content-type": "text/plain"}),
    ("utf16le-no-bom", NOSQL.decode().encode("utf-16-le"), {"content-type": "application/json"}),
    ("utf32be", PROTO.decode().encode("utf-32-be"), {"content-type": "text/plain"}),
    ("dup-key-text", b'{"pass":"x","pass":{"$ne":null}}', {"content-type": "text/plain"}),
    ("dup-key-json", b'{"pass":"x","pass":{"$ne":null}}', {"content-type": "application/json"}),
    ("nan-plus-payload", b'{"n":NaN,"__proto__":{}}', {"content-type": "text/plain"}),
    ("trailing-value", b'{"a":1}{"__proto__":{"x":1}}', {"content-type": "application/json"}),
    ("trailing-text", b'{"a":1} <script>alert(1)</script>', {"content-type": "text/plain"}),
    ("form-key-json", b"%7B%22pass%22%3A%7B%22%24ne%22%3Anull%7D%7D", {"content-type": "application/x-www-form-urlencoded"}),
    ("form-value-json", b"q=%7B%22%24where%22%3A%221%22%7D", {"content-type": "application/x-www-form-urlencoded"}),
    ("gzip-json", gzip.compress(PROTO), {"content-type": "application/json", "content-encoding": "gzip"}),
    ("gzip-text-label", gzip.compress(NOSQL), {"content-type": "text/plain", "content-encoding": "gzip"}),
    ("deflate-json", zlib.compress(NOSQL), {"content-type": "application/json", "content-encoding": "deflate"}),
    ("raw-deflate-form", zlib.compress(b"a=1&a=%3Cscript%3Ealert(1)%3C/script%3E")[2:-4],
     {"content-type": "application/x-www-form-urlencoded", "content-encoding": "deflate"}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "headers"), LABELS, ids=[c[0] for c in LABELS])
def test_a_payload_under_any_label_is_inspected(
    stack: Stack, name: str, body: bytes, headers: dict[str, str]
) -> None:
    check(stack, name, "/open", body, 403, headers)


CLEAN = b'{"to":"bob","amount":5}'

REFUSED: list[tuple[str, str, bytes, dict[str, str], int]] = [
    ("undecodable-json", "/open", b'{"a": ', {"content-type": "application/json"}, 400),
    ("bad-gzip", "/open", b"\x1f\x8bnot gzip at all", {"content-type": "application/json", "content-encoding": "gzip"}, 400),
    ("brotli", "/open", b"\x0b\x02\x80{}\x03", {"content-type": "application/json", "content-encoding": "br"}, 415),
    ("unknown-coding", "/open", CLEAN, {"content-type": "application/json", "content-encoding": "x-custom"}, 415),
    ("gzip-bomb", "/quiet", gzip.compress(b"{\"a\":\"" + b"a" * (4 * LIMIT) + b"\"}"), {"content-type": "application/json", "content-encoding": "gzip"}, 413),
    ("contract-dup-key", "/transfer", b'{"to":"bob","amount":5,"amount":5000}', {"content-type": "application/json"}, 400),
    ("contract-nan", "/transfer", b'{"to":"bob","amount":NaN}', {"content-type": "application/json"}, 400),
    ("contract-trailing", "/transfer", CLEAN + b'{"amount":5000}', {"content-type": "application/json"}, 400),
    ("contract-form-dup", "/transfer", b"to=bob&amount=5&amount=5000", {"content-type": "application/x-www-form-urlencoded"}, 400),
    ("contract-text-label", "/transfer", CLEAN, {"content-type": "text/plain"}, 403),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "path", "body", "headers", "status"), REFUSED, ids=[c[0] for c in REFUSED]
)
def test_what_cannot_be_read_as_the_upstream_reads_it_is_refused(
    stack: Stack, name: str, path: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    check(stack, name, path, body, status, headers)


ALLOWED: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("clean-json", "/transfer", CLEAN, {"content-type": "application/json"}),
    ("clean-bom-json-open", "/open", b"\xef\xbb\xbf" + CLEAN, {"content-type": "application/json"}),
    ("clean-gzip", "/transfer", gzip.compress(CLEAN), {"content-type": "application/json", "content-encoding": "gzip"}),
    ("clean-text", "/open", b"hello, world", {"content-type": "text/plain"}),
    ("clean-form-repeats", "/open", b"tag=a&tag=b&tag=c", {"content-type": "application/x-www-form-urlencoded"}),
    ("clean-dup-open", "/open", b'{"a":1,"a":2}', {"content-type": "application/json"}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "path", "body", "headers"), ALLOWED, ids=[c[0] for c in ALLOWED])
def test_clean_bodies_reach_the_upstream_unchanged(
    stack: Stack, name: str, path: str, body: bytes, headers: dict[str, str]
) -> None:
    # aiohttp (the echo) inflates a gzip body itself, as Express's body-parser does: the bytes
    # it reads are the ones the detectors read.
    coded = headers.get("content-encoding") == "gzip"
    check(
        stack,
        name,
        path,
        body,
        200,
        headers,
        upstream_reads=gzip.decompress(body) if coded else None,
    )


@st.composite
def dressed(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A NoSQL or prototype-pollution payload in JSON, in any dress a lenient upstream reads."""
    key = draw(st.text(alphabet="abcdefghij", min_size=1, max_size=6))
    payload = draw(st.sampled_from(['{"$ne": null}', '{"$gt": ""}', '{"__proto__": {"a": 1}}']))
    text = draw(
        st.sampled_from(
            [
                f'{{"{key}": {payload}}}',
                f'{{"{key}": "ok", "{key}": {payload}}}',
                f'{{"{key}": {payload}, "{key}": "ok"}}',
                f'{{"n": NaN, "{key}": {payload}}}',
                f'{{"{key}": 1}} {{"{key}": {payload}}}',
                f'[{{"{key}": [{payload}]}}]',
            ]
        )
    )
    raw = text.encode(
        draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32-le"]))
    )
    headers: dict[str, str] = {}
    label = draw(
        st.sampled_from(
            [None, "text/plain", "application/json", "application/x-www-form-urlencoded", "x/y"]
        )
    )
    if label:
        headers["content-type"] = label
    coding = draw(st.sampled_from([None, "gzip", "deflate"]))
    if coding == "gzip":
        raw, headers["content-encoding"] = gzip.compress(raw), coding
    elif coding == "deflate":
        raw, headers["content-encoding"] = zlib.compress(raw), coding
    return raw, headers


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=dressed())
def test_generated_dresses_never_reach_the_upstream(
    stack: Stack, case: tuple[bytes, dict[str, str]]
) -> None:
    raw, headers = case
    before = stack.upstream.count
    status, echo = send(stack, "/open", raw, headers)
    assert status in (400, 403, 413, 415) and echo is None, (raw[:60], headers, status)
    assert stack.upstream.count == before


# --- class 3: repeated keys -------------------------------------------------------------------

REPEATS: list[tuple[str, bytes, dict[str, str]]] = [
    ("form-repeat-xss", b"q=hello&q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", {"content-type": "application/x-www-form-urlencoded"}),
    ("form-repeat-ssrf", b"url=https%3A%2F%2Fok.example%2F&url=http%3A%2F%2F169.254.169.254%2Flatest", {"content-type": "application/x-www-form-urlencoded"}),
    ("form-repeat-sqli", b"id=1&id=1%27%20OR%20%271%27%3D%271", {"content-type": "application/x-www-form-urlencoded"}),
    ("json-repeat-nested", b'{"f":{"u":"ok","u":"http://127.0.0.1:22/"}}', {"content-type": "application/json"}),
    ("multipart-repeat", b"--B\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nok\r\n--B\r\n"
     b"Content-Disposition: form-data; name=\"q\"\r\n\r\n<script>alert(1)</script>\r\n--B--\r\n",
     {"content-type": "multipart/form-data; boundary=B"}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "headers"), REPEATS, ids=[c[0] for c in REPEATS])
def test_every_value_of_a_repeated_key_is_inspected(
    stack: Stack, name: str, body: bytes, headers: dict[str, str]
) -> None:
    check(stack, name, "/open", body, 403, headers)


def test_a_repeated_query_parameter_is_inspected(stack: Stack) -> None:
    before = stack.upstream.count
    status, _ = send(
        stack,
        "/open?u=https://ok.example/&u=http://169.254.169.254/",
        CLEAN,
        {"content-type": "application/json"},
    )
    _RESULTS[(stack.mode, "query-repeat")] = (status, stack.upstream.count > before)
    assert status == 403 and stack.upstream.count == before


def test_both_modes_decide_alike(stack: Stack) -> None:
    """Last in the module (each mode's cases run together, gRPC first): every case this mode
    ran was decided, and once both modes ran, decided the same way in both."""
    mine = {case: got for (mode, case), got in _RESULTS.items() if mode == stack.mode}
    assert len(mine) > 60, sorted(mine)
    other = {case: got for (mode, case), got in _RESULTS.items() if mode != stack.mode}
    if other:
        differ = {c: (mine.get(c), other.get(c)) for c in mine.keys() | other.keys()}
        assert not {c: v for c, v in differ.items() if v[0] != v[1]}, differ
