"""Table tests: Envoy CheckRequest protobuf fixtures → RequestContext."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from google.protobuf import json_format

from extauthz import InvalidContext
from extauthz.envoy import AdapterOptions, check_request_to_context
from extauthz.envoy.request import (
    CLAIMS_TOO_DEEP,
    JWT_AUTHN_NAMESPACE,
    NOT_A_CHECK_REQUEST,
    parse_check_request,
)


def make(http: dict[str, Any] | None = None, **attrs: Any) -> CheckRequest:
    base_http = {"id": "req-1", "method": "GET", "path": "/", "host": "api", "scheme": "https"}
    base_http.update(http or {})
    data = {"attributes": {"request": {"http": base_http}, **attrs}}
    return json_format.ParseDict(data, CheckRequest())


def jwt(payload: dict[str, Any], key: str = "jwt_payload") -> dict[str, Any]:
    return {"metadataContext": {"filterMetadata": {"envoy.filters.http.jwt_authn": {key: payload}}}}


def test_method_path_and_raw_query_split() -> None:
    ctx = check_request_to_context(
        make({"method": "post", "path": "/a/%2e%2e/b?x=1&x=2&y=a%20b&e="})
    )
    r = ctx.request
    assert (r.method, r.path) == ("POST", "/a/%2e%2e/b")  # path stays undecoded
    assert r.query == {"x": "1,2", "y": "a b", "e": ""}
    assert (r.host, r.scheme) == ("api", "https")
    assert ctx.id == "req-1"


@pytest.mark.parametrize(
    ("http", "expected"),
    [
        (
            {"headers": {"content-type": "application/json", ":path": "/"}},
            {"content-type": "application/json"},
        ),
        ({"headers": {"x-a": "1,2"}}, {"x-a": "1,2"}),
        (
            {
                "headers": {"x-ignored": "map"},
                "headerMap": {
                    "headers": [
                        {"key": "X-A", "rawValue": "MQ=="},
                        {"key": "x-a", "value": "2"},
                        {"key": ":authority", "value": "api"},
                    ]
                },
            },
            {"x-a": "1,2"},
        ),
        (
            {"headers": {"": "empty-name", ":method": "GET", ":": "colon", "x-b": "2"}},
            {"": "empty-name", "x-b": "2"},
        ),
    ],
    ids=["pseudo-headers-dropped", "comma-joined-kept", "header-map-preferred", "empty-name-kept"],
)
def test_headers(http: dict[str, Any], expected: dict[str, str]) -> None:
    assert dict(check_request_to_context(make(http)).request.headers) == expected


@pytest.mark.parametrize(
    ("http", "present", "size", "raw", "partial"),
    [
        ({}, False, 0, None, False),
        (
            {"rawBody": "eyJhIjoxfQ==", "headers": {"content-length": "7"}},
            True,
            7,
            b'{"a":1}',
            False,
        ),
        ({"body": "héllo"}, True, 6, "héllo".encode(), False),
        (
            {
                "rawBody": "YWJj",
                "headers": {"content-length": "5000", "x-envoy-auth-partial-body": "true"},
            },
            True,
            5000,
            b"abc",
            True,
        ),
        ({"headers": {"content-length": "42"}}, True, 42, None, False),
        ({"rawBody": "YWJj", "headers": {"content-length": "9000"}}, True, 9000, b"abc", True),
    ],
    ids=[
        "no-body",
        "raw-body-exact",
        "string-body",
        "partial-uses-content-length",
        "not-buffered",
        "shorter-than-content-length-is-partial",
    ],
)
def test_body(
    http: dict[str, Any], present: bool, size: int, raw: bytes | None, partial: bool
) -> None:
    body = check_request_to_context(make(http)).request.body
    assert (body.present, body.size_bytes, body.raw, body.partial) == (present, size, raw, partial)


@pytest.mark.parametrize(
    ("declared", "size", "partial"),
    [
        ("5000", 5000, True),
        ("3", 3, False),
        ("5\u00b2", 3, False),  # str.isdigit() is true, int() would raise
        ("\u0661\u0662\u0663\u0664", 3, False),  # Arabic-Indic 1234: int() would read it
        (" 5000", 3, False),  # int() would strip the space
        ("+5000", 3, False),
        ("5_000", 3, False),
        ("-1", 3, False),
        ("9" * 5000, 3, False),  # int() refuses 4300+ digits
    ],
    ids=["digits", "exact", "superscript", "arabic-indic", "space", "plus", "underscore",
         "negative", "5000-digits"],
)  # fmt: skip
def test_declared_length_is_read_as_in_http_mode(declared: str, size: int, partial: bool) -> None:
    """gRPC mode reads ``content-length`` as HTTP mode and the size limit do
    (``_http.declared_length``): ASCII digits or nothing, so one request has one size."""
    body = check_request_to_context(
        make({"rawBody": "YWJj", "headers": {"content-length": declared}})
    ).request.body
    assert (body.size_bytes, body.partial, body.raw) == (size, partial, b"abc")


def test_raw_body_is_exact_bytes() -> None:
    payload = b'{"a": 1,\n "b":"\xc3\xa9"}\r\n'
    req = make({"method": "POST"})
    req.attributes.request.http.raw_body = payload
    assert check_request_to_context(req).request.body.raw == payload


def test_identity_from_jwt_authn_metadata() -> None:
    payload = {"sub": "user-1", "tenant": "acme", "scope": "read write", "exp": 1700000000}
    ctx = check_request_to_context(make(**jwt(payload)))
    i = ctx.identity
    assert i.authenticated
    assert (i.subject, i.tenant, i.scopes) == ("user-1", "acme", ("read", "write"))
    assert i.claims["exp"] == 1700000000 and isinstance(i.claims["exp"], int)


def test_identity_scp_list_and_custom_claims() -> None:
    payload = {"uid": "u", "org": {"id": "o"}, "org_id": "o-1", "scp": ["a", "b"]}
    options = AdapterOptions(subject_claim="uid", tenant_claim="org_id", jwt_metadata_key="p")
    i = check_request_to_context(make(**jwt(payload, key="p")), options).identity
    assert (i.subject, i.tenant, i.scopes) == ("u", "o-1", ("a", "b"))
    assert i.claims["org"] == {"id": "o"}


@pytest.mark.parametrize(
    "attrs",
    [{}, jwt({"sub": "x"}, key="other"), {"metadataContext": {"filterMetadata": {"x": {}}}}],
    ids=["no-metadata", "other-key", "other-namespace"],
)
def test_anonymous_without_jwt_payload(attrs: dict[str, Any]) -> None:
    i = check_request_to_context(make(**attrs)).identity
    assert not i.authenticated and i.subject is None and i.tenant is None


def test_client_ip_route_pin_and_timestamp() -> None:
    ctx = check_request_to_context(
        make(
            {"headers": {"user-agent": "curl/8"}},
            source={"address": {"socketAddress": {"address": "10.1.2.3", "portValue": 5}}},
            contextExtensions={"route_id": "license-get", "env": "prod"},
        )
    )
    assert ctx.client.ip == "10.1.2.3" and ctx.client.user_agent == "curl/8"
    assert ctx.request.route_id == "license-get"
    assert ctx.runtime.env == "prod"
    req = make()
    req.attributes.request.time.seconds = 1_700_000_000
    assert check_request_to_context(req).timestamp == "2023-11-14T22:13:20.000Z"


def test_request_id_prefers_x_request_id_then_stream_id() -> None:
    """x-request-id is what Envoy logs and forwards; ``http.id`` is only the stream id."""
    with_header = make({"id": "7301", "headers": {"x-request-id": "rid"}})
    assert check_request_to_context(with_header).id == "rid"
    assert check_request_to_context(make({"id": "7301"})).id == "7301"
    assert len(check_request_to_context(make({"id": ""})).id) == 32


@pytest.mark.parametrize(
    "req",
    [CheckRequest(), make({"method": ""}), make({"path": ""})],
    ids=["empty", "no-method", "no-path"],
)
def test_unconvertible_request_raises_invalid_context(req: CheckRequest) -> None:
    with pytest.raises(InvalidContext):
        check_request_to_context(req)


def test_identity_is_built_once_per_payload_and_read_only() -> None:
    payload = {"sub": "u-cache", "tenant": "t-1", "scope": "a"}
    first = check_request_to_context(make(**jwt(payload))).identity
    again = check_request_to_context(make(**jwt(payload))).identity
    assert again is first  # same verified payload, same options: same identity
    other = check_request_to_context(make(**jwt({**payload, "tenant": "t-2"}))).identity
    assert other.tenant == "t-2"
    custom = check_request_to_context(make(**jwt(payload)), AdapterOptions(tenant_claim="sub"))
    assert custom.identity.tenant == "u-cache"  # options are part of the key
    with pytest.raises(TypeError):
        first.claims["sub"] = "root"  # type: ignore[index]


def test_timestamp_unset_versus_epoch() -> None:
    """An unset ``time`` gives no timestamp; one explicitly at the epoch is still formatted."""
    assert check_request_to_context(make()).timestamp == ""
    req = make()
    req.attributes.request.time.SetInParent()
    assert check_request_to_context(req).timestamp == "1970-01-01T00:00:00.000Z"
    req.attributes.request.time.nanos = 1_500_000
    assert check_request_to_context(req).timestamp == "1970-01-01T00:00:00.001Z"


# -- claims nested too deep (issue 24): refused alike in both modes, in our own words --------


def _deep_check_request(levels: int) -> bytes:
    """A CheckRequest whose jwt_authn payload nests ``levels`` deep (the claims object is 1)."""
    req = CheckRequest()
    req.attributes.request.http.method = "GET"
    req.attributes.request.http.path = "/deep"
    req.attributes.source.address.socket_address.address = "10.0.0.9"
    nested: Any = "x"
    for _ in range(levels - 1):
        nested = {"a": nested}
    fm = req.attributes.metadata_context.filter_metadata[JWT_AUTHN_NAMESPACE]
    fm.update({"jwt_payload": {"sub": "alice", **({"d": nested} if levels > 1 else {})}})
    return req.SerializeToString()


@pytest.mark.parametrize("levels", [1, 2, 8, 16])
def test_claims_up_to_the_depth_limit_are_read(levels: int) -> None:
    ctx = check_request_to_context(parse_check_request(_deep_check_request(levels)))
    assert ctx.identity.subject == "alice" and ctx.client.ip == "10.0.0.9"


@pytest.mark.parametrize("levels", [17, 20, 30, 31, 32, 35, 60, 200])
def test_claims_past_the_limit_are_refused_whether_upb_decodes_them_or_not(levels: int) -> None:
    """Below ~31 levels upb decodes the request and the adapter refuses; past it upb cannot
    decode it at all: the same refusal, with no upb text."""
    with pytest.raises(InvalidContext) as err:
        check_request_to_context(parse_check_request(_deep_check_request(levels)))
    assert str(err.value) == CLAIMS_TOO_DEEP


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"\x0a\x05abc", b"\x08" + b"\xff" * 11])
def test_undecodable_bytes_are_refused_without_library_text(data: bytes) -> None:
    with pytest.raises(InvalidContext) as err:
        parse_check_request(data)
    assert str(err.value) == NOT_A_CHECK_REQUEST and "upb" not in str(err.value)
