"""Table tests: Envoy's HTTP-mode authorization request (``HttpIn``) → RequestContext.

The adapter alone, with the header shapes Envoy's ``http_service`` sends; the same requests
through the HTTP socket are in ``tests/server/test_http_socket.py``, through a real Envoy in
``tests/e2e/`` (both modes).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from extauthz import InvalidContext
from extauthz._http import HttpIn
from extauthz.context import ANONYMOUS
from extauthz.envoy.http_request import (
    CLIENT_ADDRESS_HEADER,
    CONTENT_LENGTH_HEADER,
    PAYLOAD_HEADER,
    forwarded_request_to_context,
)
from extauthz.envoy.request import CLAIMS_TOO_DEEP, MAX_CLAIMS_DEPTH, AdapterOptions


def forwarded(
    method: str = "GET",
    path: str = "/",
    query: str = "",
    body: bytes = b"",
    **headers: str,
) -> HttpIn:
    """What the HTTP server hands the adapter: path without ``/ext_authz``, names lower-case."""
    return HttpIn(method, path, query, {k.replace("_", "-"): v for k, v in headers.items()}, body)


def payload(claims: Any) -> str:
    """``forward_payload_header``'s encoding: base64url JSON without padding."""
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()


def test_method_path_and_query_split() -> None:
    ctx = forwarded_request_to_context(
        forwarded("post", "/a/%2e%2e/b", "x=1&x=2&y=a%20b&e=#frag", host="api", x_request_id="r-1")
    )
    r = ctx.request
    assert (r.method, r.path) == ("POST", "/a/%2e%2e/b")  # the engine canonicalises, not us
    assert r.query == {"x": "1,2", "y": "a b", "e": ""}
    assert (r.host, r.route_id) == ("api", None)  # no context_extensions in HTTP mode
    assert ctx.id == "r-1"


def test_a_fragment_never_reaches_the_path_and_no_query_is_an_empty_map() -> None:
    r = forwarded_request_to_context(forwarded(path="/docs#section")).request
    assert (r.path, r.query) == ("/docs", {})


@pytest.mark.parametrize(
    ("method", "path", "reason"),
    [("", "/x", "no method"), ("GET", "", "no path"), ("GET", "x", "no path")],
)
def test_unusable_request_is_invalid_context(method: str, path: str, reason: str) -> None:
    with pytest.raises(InvalidContext, match=reason):
        forwarded_request_to_context(forwarded(method, path))


def test_internal_headers_never_reach_the_policy_s_headers() -> None:
    ctx = forwarded_request_to_context(
        forwarded(
            "POST",
            "/x",
            body=b"{}",
            content_type="application/json",
            x_forwarded_proto="https",
            x_forwarded_for="10.1.1.1",
            user_agent="curl/8",
            **{
                PAYLOAD_HEADER.replace("-", "_"): payload({"sub": "alice"}),
                CLIENT_ADDRESS_HEADER.replace("-", "_"): "192.0.2.7",
                CONTENT_LENGTH_HEADER.replace("-", "_"): "2",
            },
        )
    )
    assert dict(ctx.request.headers) == {
        "content-type": "application/json",
        "x-forwarded-proto": "https",
        "x-forwarded-for": "10.1.1.1",  # a client header like any other: kept, never trusted
        "user-agent": "curl/8",
    }
    assert ctx.request.content_type == "application/json" and ctx.request.scheme == "https"
    assert ctx.client.user_agent == "curl/8"


def test_identity_from_the_verified_payload() -> None:
    claims = {"sub": "alice", "tenant": "acme", "scope": "a:read a:write", "n": 1}
    identity = forwarded_request_to_context(forwarded(x_jwt_payload=payload(claims))).identity
    assert identity.authenticated
    assert (identity.subject, identity.tenant) == ("alice", "acme")
    assert identity.scopes == ("a:read", "a:write")
    assert dict(identity.claims) == claims


def test_identity_claims_follow_the_adapter_options() -> None:
    options = AdapterOptions(subject_claim="uid", tenant_claim="org")
    header = payload({"uid": "u-7", "org": "globex", "sub": "ignored"})
    identity = forwarded_request_to_context(forwarded(x_jwt_payload=header), options).identity
    assert (identity.subject, identity.tenant) == ("u-7", "globex")


@pytest.mark.parametrize(
    "header",
    [
        "%%not-base64%%",
        base64.urlsafe_b64encode(b"not json").decode(),
    ],
    ids=["not-base64", "not-json"],
)
def test_malformed_payload_is_invalid_context(header: str) -> None:
    with pytest.raises(InvalidContext, match=PAYLOAD_HEADER):
        forwarded_request_to_context(forwarded(x_jwt_payload=header))


@pytest.mark.parametrize("depth", [17, 35, 100_000])
def test_claims_nested_too_deep_are_refused_as_in_grpc_mode(depth: int) -> None:
    """Issue 24: the same limit and words as gRPC mode (``MAX_CLAIMS_DEPTH``)."""
    nested: object = "x"
    for _ in range(depth - 1):
        nested = [nested]
    text = b"[" * 100_000 if depth == 100_000 else json.dumps({"sub": "a", "d": nested}).encode()
    header = base64.urlsafe_b64encode(text).decode()
    with pytest.raises(InvalidContext) as err:
        forwarded_request_to_context(forwarded(x_jwt_payload=header))
    assert str(err.value) == CLAIMS_TOO_DEEP


def test_claims_at_the_depth_limit_are_read() -> None:
    nested: object = "x"
    for _ in range(MAX_CLAIMS_DEPTH - 1):  # the claims object is level 1
        nested = {"a": nested}
    header = payload({"sub": "alice", "d": nested})
    assert forwarded_request_to_context(forwarded(x_jwt_payload=header)).identity.subject == "alice"


@pytest.mark.parametrize("claims", [[1, 2], "alice", 7, None, {}], ids=repr)
def test_payload_that_is_not_a_claims_object_is_anonymous(claims: Any) -> None:
    ctx = forwarded_request_to_context(forwarded(x_jwt_payload=payload(claims)))
    assert ctx.identity is ANONYMOUS


def test_no_payload_is_anonymous() -> None:
    assert forwarded_request_to_context(forwarded()).identity is ANONYMOUS


@pytest.mark.parametrize(
    ("headers", "ip"),
    [
        ({"x_contractshield_client_address": "192.0.2.7"}, "192.0.2.7"),
        ({"x_contractshield_client_address": "2001:db8::1"}, "2001:db8::1"),
        ({"x_forwarded_for": "10.9.9.9"}, None),  # never read: a client can set it
        ({"x_forwarded_for": "10.9.9.9", "x_contractshield_client_address": "192.0.2.7"}, "192.0.2.7"),
        ({"x_real_ip": "10.9.9.9"}, None),
        ({"x_contractshield_client_address": ""}, None),
    ],
)  # fmt: skip
def test_client_address_comes_from_envoy_s_header_only(
    headers: dict[str, str], ip: str | None
) -> None:
    assert forwarded_request_to_context(forwarded(**headers)).client.ip == ip


PARTIAL = {"x_envoy_auth_partial_body": "true"}


@pytest.mark.parametrize(
    ("headers", "size"),
    [
        ({CONTENT_LENGTH_HEADER: "5000"}, 5000),  # Envoy's copy of the client's header
        ({"content-length": "4000"}, 4000),  # no copy (an older config): Envoy's own header
        ({CONTENT_LENGTH_HEADER: "5000", "content-length": "3"}, 5000),  # Envoy rewrote it
        ({CONTENT_LENGTH_HEADER: "5²"}, 3),  # str.isdigit() is true, int() would raise
        ({CONTENT_LENGTH_HEADER: "²"}, 3),
        ({CONTENT_LENGTH_HEADER: "\u0661\u0662\u0663\u0664"}, 3),  # Arabic-Indic 1234: int() takes it
        ({CONTENT_LENGTH_HEADER: "9" * 5000}, 3),  # int() refuses 4300+ digits
        ({CONTENT_LENGTH_HEADER: "-1"}, 3),
        ({CONTENT_LENGTH_HEADER: " 5000"}, 3),
        ({}, 3),
    ],
    ids=["copy", "content-length", "copy-wins", "superscript", "superscript-only", "arabic-indic",
         "5000-digits", "negative", "space", "missing"],
)  # fmt: skip
def test_declared_length_of_a_partial_body(headers: dict[str, str], size: int) -> None:
    req = forwarded("POST", "/x", body=b"abc", **PARTIAL)
    req.headers.update(headers)
    body = forwarded_request_to_context(req).request.body
    assert body.partial and body.present
    assert body.size_bytes == size and body.raw == b"abc"


@pytest.mark.parametrize(
    ("flag", "declared", "partial", "size"),
    [
        ("true", None, True, 3),
        ("TRUE", None, True, 3),
        ("false", None, False, 3),
        (None, "3", False, 3),
        (None, "10", True, 10),  # fewer bytes than declared and no flag: cut all the same
        (None, "²", False, 3),
    ],
)
def test_partial_body_flag(
    flag: str | None, declared: str | None, partial: bool, size: int
) -> None:
    req = forwarded("POST", "/x", body=b"abc")
    if flag is not None:
        req.headers["x-envoy-auth-partial-body"] = flag
    if declared is not None:
        req.headers[CONTENT_LENGTH_HEADER] = declared
    body = forwarded_request_to_context(req).request.body
    assert (body.partial, body.size_bytes) == (partial, size)


def test_no_body_and_a_declared_length_without_bytes() -> None:
    assert not forwarded_request_to_context(forwarded()).request.body.present
    unbuffered = forwarded_request_to_context(forwarded(**{"content-length": "12"})).request.body
    assert unbuffered.present and unbuffered.size_bytes == 12 and unbuffered.raw is None


def test_request_id_and_timestamp_when_envoy_sends_none() -> None:
    first = forwarded_request_to_context(forwarded())
    second = forwarded_request_to_context(forwarded())
    assert re.fullmatch(r"[0-9a-f]{32}", first.id) and first.id != second.id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first.timestamp)


HEADER_SETS = [
    {"host": "a", "content-length": "3"},
    {"x-jwt-payload": payload({"sub": "s"}), "host": "a", "x-contractshield-client-address": "1.2.3.4",
     "content-length": "3", "x-contractshield-content-length": "9", "user-agent": "u"},
    {"x-contractshield-client-address": "", "x-contractshield-content-length": "", "a": "1"},
    {"content-length": "3", "x-contractshield-content-length": "", "z": "", "b": "2"},
    {"x-contractshield-content-length": "abc", "content-length": "5"},
]  # fmt: skip


@pytest.mark.parametrize("headers", HEADER_SETS)
def test_the_client_headers_are_the_request_headers_without_ours_in_order(
    headers: dict[str, str],
) -> None:
    """The copy-then-pop of ``INTERNAL_HEADERS`` is the filtering comprehension it replaced:
    the same headers in the same order, the same client address and declared length, and the
    request's own headers untouched."""
    req = HttpIn("POST", "/p", "", dict(headers), b"abc")
    ctx = forwarded_request_to_context(req)
    ours = {PAYLOAD_HEADER, CLIENT_ADDRESS_HEADER, CONTENT_LENGTH_HEADER}
    expected = {k: v for k, v in headers.items() if k not in ours}
    assert ctx.request.headers == expected and list(ctx.request.headers) == list(expected)
    assert req.headers == headers
    assert ctx.client.ip == (headers.get(CLIENT_ADDRESS_HEADER) or None)
    declared = headers.get(CONTENT_LENGTH_HEADER) or headers.get("content-length")
    size = int(declared) if declared and declared.isdigit() else 0
    assert ctx.request.body.size_bytes == max(3, size)
    assert ctx.identity.authenticated == (PAYLOAD_HEADER in headers)
