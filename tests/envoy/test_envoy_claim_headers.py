"""Identity from claim headers (``JWT_CLAIM_HEADERS``): what Istio's ``outputClaimToHeaders``
and Envoy Gateway's ``claimToHeaders`` deliver, read the same way in both authz modes."""

from __future__ import annotations

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from google.protobuf import json_format

from extauthz import InvalidConfig
from extauthz._http import HttpIn
from extauthz.context import ANONYMOUS
from extauthz.envoy import AdapterOptions, check_request_to_context
from extauthz.envoy.http_request import forwarded_request_to_context
from extauthz.envoy.request import parse_claim_headers
from extauthz.server.config import ServerConfig

MAPPING = "sub=x-jwt-sub, tenant=X-Jwt-Tenant,scope=x-jwt-scope"
OPTIONS = AdapterOptions(claim_headers=parse_claim_headers(MAPPING))


def grpc_context(headers: dict[str, str], metadata: dict[str, object] | None = None) -> object:
    attrs: dict[str, object] = {
        "request": {"http": {"method": "GET", "path": "/x", "headers": headers}}
    }
    if metadata is not None:
        attrs["metadataContext"] = {
            "filterMetadata": {"envoy.filters.http.jwt_authn": {"jwt_payload": metadata}}
        }
    return check_request_to_context(
        json_format.ParseDict({"attributes": attrs}, CheckRequest()), OPTIONS
    )


def http_context(headers: dict[str, str]) -> object:
    return forwarded_request_to_context(HttpIn("GET", "/x", "", headers, b""), OPTIONS)


def test_parsing_lower_cases_headers_and_keeps_the_order() -> None:
    assert parse_claim_headers(MAPPING) == (
        ("sub", "x-jwt-sub"),
        ("tenant", "x-jwt-tenant"),
        ("scope", "x-jwt-scope"),
    )
    assert parse_claim_headers("") == ()


@pytest.mark.parametrize(
    "text", ["sub", "sub=", "=x-a", "sub=x a", "sub=x-a,sub=x-b", "sub=x-a,tenant=X-A"]
)
def test_malformed_mappings_are_refused_at_start_up(text: str) -> None:
    with pytest.raises(InvalidConfig, match="JWT_CLAIM_HEADERS"):
        parse_claim_headers(text)
    with pytest.raises(InvalidConfig, match="JWT_CLAIM_HEADERS"):
        ServerConfig.resolve(environ={"POLICY_PATH": "p", "JWT_CLAIM_HEADERS": text})


@pytest.mark.parametrize("build", [grpc_context, http_context], ids=["grpc", "http"])
def test_both_modes_read_the_same_identity(build: object) -> None:
    headers = {"x-jwt-sub": "alice", "x-jwt-tenant": "acme", "x-jwt-scope": "read write"}
    identity = build(headers).identity  # type: ignore[operator]
    assert identity.authenticated
    assert (identity.subject, identity.tenant, identity.scopes) == (
        "alice",
        "acme",
        ("read", "write"),
    )
    assert dict(identity.claims) == {"sub": "alice", "tenant": "acme", "scope": "read write"}
    assert build({"x-other": "1"}).identity is ANONYMOUS  # type: ignore[operator]
    assert build({"x-jwt-sub": ""}).identity is ANONYMOUS  # type: ignore[operator]


def test_a_verified_payload_wins_over_headers() -> None:
    ctx = grpc_context({"x-jwt-sub": "mallory"}, {"sub": "alice"})
    assert ctx.identity.subject == "alice"  # type: ignore[attr-defined]


def test_headers_are_not_read_unless_configured() -> None:
    req = json_format.ParseDict(
        {
            "attributes": {
                "request": {"http": {"method": "GET", "path": "/", "headers": {"x-jwt-sub": "a"}}}
            }
        },
        CheckRequest(),
    )
    assert check_request_to_context(req).identity is ANONYMOUS
