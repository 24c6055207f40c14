"""``decision_to_check_bytes`` parses to exactly what ``decision_to_check_response`` builds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from google.protobuf import json_format
from google.protobuf.internal.encoder import _VarintBytes

from extauthz import Decision, DecisionMetadata, Identity, Risk, RuleHit
from extauthz.envoy import response as response_module
from extauthz.envoy.response import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    POLICY_VIOLATION,
    _varint,
    decision_to_check_bytes,
    decision_to_check_response,
)
from extauthz.server import grpc_service
from extauthz.server.app import build_state
from extauthz.server.config import ServerConfig
from extauthz.server.grpc_service import AuthorizationServicer

META = DecisionMetadata(
    route_id="license-get", mode="enforce", policy_version="sha256:1", request_id="rid"
)
ALICE = Identity(authenticated=True, subject="alice", tenant="acme")
HITS = (RuleHit("tenant.binding", "high", "m"), RuleHit("auth.required", "high", "m"))
LONG_200 = "s" * 200  # a two-byte varint for the value, the header and the ok_response
LONG_20K = "ü" * 10_000  # 20,000 UTF-8 bytes: three-byte varints
LONG_3M = "x" * 2_100_000  # above 2**21: four-byte varints

CASES: list[tuple[str, Decision, Identity | None, dict[str, Any]]] = [
    ("allow", Decision("ALLOW", metadata=META), ALICE, {}),
    ("allow-no-identity", Decision("ALLOW", metadata=META), None, {}),
    ("allow-anonymous", Decision("ALLOW", metadata=META), Identity(), {}),
    (
        "allow-unauthenticated-with-claims",  # not authenticated: no identity headers
        Decision("ALLOW", metadata=META),
        Identity(authenticated=False, subject="mallory", tenant="evil"),
        {},
    ),
    ("allow-no-subject", Decision("ALLOW", metadata=META), Identity(True, None, "acme"), {}),
    ("allow-empty-subject", Decision("ALLOW", metadata=META), Identity(True, "", "acme"), {}),
    ("allow-no-tenant", Decision("ALLOW", metadata=META), Identity(True, "alice"), {}),
    (
        "allow-bare-metadata",
        Decision("ALLOW", metadata=DecisionMetadata(request_id="r")),
        ALICE,
        {},
    ),
    (
        "allow-no-route",
        Decision("ALLOW", metadata=DecisionMetadata(policy_version="v9", request_id="r")),
        ALICE,
        {},
    ),
    (
        "allow-no-policy-version",
        Decision("ALLOW", metadata=DecisionMetadata(route_id="health", request_id="r")),
        ALICE,
        {},
    ),
    ("allow-not-cacheable", Decision("ALLOW", metadata=META), ALICE, {"cacheable": False}),
    (
        "allow-not-cacheable-anonymous",
        Decision("ALLOW", metadata=META),
        None,
        {"cacheable": False},
    ),
    ("allow-unicode", Decision("ALLOW", metadata=META), Identity(True, "élodie-東京-🙂", "ß"), {}),
    ("allow-subject-200", Decision("ALLOW", metadata=META), Identity(True, LONG_200, "t"), {}),
    ("allow-subject-20k", Decision("ALLOW", metadata=META), Identity(True, LONG_20K, "t"), {}),
    ("allow-subject-2m", Decision("ALLOW", metadata=META), Identity(True, LONG_3M), {}),
    (
        "allow-long-everything",
        Decision(
            "ALLOW",
            metadata=DecisionMetadata(
                route_id="r" * 300, policy_version="v" * 300, request_id="i" * 20_000
            ),
        ),
        Identity(True, "s" * 130, "t" * 20_000),
        {},
    ),
    (
        "allow-unicode-decision-id",
        Decision("ALLOW", metadata=DecisionMetadata(request_id="id-☃-" + "é" * 70)),
        ALICE,
        {},
    ),
    ("allow-generated-decision-id", Decision("ALLOW"), ALICE, {}),
    (
        "monitor",
        Decision("MONITOR", 403, "tenant mismatch", HITS, Risk(70, "high"), META),
        ALICE,
        {},
    ),
    ("monitor-anonymous", Decision("MONITOR", metadata=META), None, {"cacheable": False}),
    ("monitor-long-subject", Decision("MONITOR", metadata=META), Identity(True, LONG_20K), {}),
    ("block-403", Decision("BLOCK", 403, "tenant mismatch", HITS, metadata=META), ALICE, {}),
    (
        "block-400",
        Decision("BLOCK", 400, "bad body", HITS, metadata=META),
        None,
        {"error_code": INVALID_REQUEST},
    ),
    (
        "block-500",
        Decision("BLOCK", 500, "internal", metadata=DecisionMetadata(request_id="r")),
        None,
        {"error_code": INTERNAL_ERROR},
    ),
    ("block-503", Decision("BLOCK", 503, "store down", metadata=META), ALICE, {}),
    ("block-unicode", Decision("BLOCK", 403, "nope ☃", HITS, metadata=META), ALICE, {}),
]


@pytest.fixture
def fixed_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both builders generate the same decision id when the decision has none."""

    class FixedUuid:
        hex = "0123456789abcdef0123456789abcdef"

    monkeypatch.setattr(response_module.uuid, "uuid4", FixedUuid)


@pytest.mark.usefixtures("fixed_uuid")
@pytest.mark.parametrize(
    ("decision", "identity", "options"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bytes_parse_to_the_message(
    decision: Decision, identity: Identity | None, options: dict[str, Any]
) -> None:
    expected = decision_to_check_response(decision, identity, **options)
    parsed = CheckResponse.FromString(decision_to_check_bytes(decision, identity, **options))
    # Message equality: repeated fields (headers, headers_to_remove) in order, maps as maps.
    assert parsed == expected
    # Spelled out for the parts built from bytes: the per-request values and the header order.
    assert parsed.dynamic_metadata["decisionId"] == expected.dynamic_metadata["decisionId"]
    ok, want = parsed.ok_response, expected.ok_response
    assert [(h.header.key, h.header.value) for h in ok.headers] == [
        (h.header.key, h.header.value) for h in want.headers
    ]
    assert list(ok.headers_to_remove) == list(want.headers_to_remove)
    # ... and the same bytes once parsed messages are serialised deterministically.
    assert parsed.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )


def test_allow_bytes_keep_the_documented_header_order() -> None:
    parsed = CheckResponse.FromString(
        decision_to_check_bytes(Decision("ALLOW", metadata=META), ALICE)
    )
    assert [h.header.key for h in parsed.ok_response.headers] == [
        "x-contractshield-decision",
        "x-contractshield-route",
        "x-contractshield-subject",
        "x-contractshield-tenant",
    ]
    assert [h.header.value for h in parsed.ok_response.headers] == [
        "ALLOW",
        "license-get",
        "alice",
        "acme",
    ]


def test_allow_bytes_carry_each_field_once() -> None:
    """One occurrence per embedded message: what upb itself writes, no reliance on merging."""
    raw = decision_to_check_bytes(Decision("ALLOW", metadata=META), ALICE)
    tags = []
    pos = 0
    while pos < len(raw):
        tag = raw[pos]
        tags.append(tag)
        length, size = _read_varint(raw, pos + 1)
        pos += 1 + size + length
    assert pos == len(raw)
    assert tags == [0x0A, 0x1A, 0x22]  # status, ok_response, dynamic_metadata


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = size = 0
    while True:
        byte = data[pos + size]
        value |= (byte & 0x7F) << shift
        size += 1
        if byte < 0x80:
            return value, size
        shift += 7


@pytest.mark.parametrize(
    "n", [0, 1, 127, 128, 255, 16383, 16384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**35]
)
def test_varint_matches_protobuf(n: int) -> None:
    assert _varint(n) == _VarintBytes(n)


@pytest.mark.parametrize("identity", [Identity(True, "al\udcffice"), ALICE])
def test_a_lone_surrogate_raises_as_the_message_path_does(identity: Identity) -> None:
    """Not valid UTF-8: both builders refuse (the servicer then answers an internal error)."""
    meta = DecisionMetadata(request_id="r\udcffid") if identity is ALICE else META
    decision = Decision("ALLOW", metadata=meta)
    with pytest.raises(UnicodeEncodeError):
        decision_to_check_response(decision, identity)
    with pytest.raises(UnicodeEncodeError):
        decision_to_check_bytes(decision, identity)


# The servicer: its bytes parse to what the message path gave before.

DEMO_POLICY = Path(__file__).resolve().parents[2] / "policies" / "demo.yaml"
ACTIVATE_BODY = {
    "licenseKey": "ABCD-1234-EFGH-5678",
    "deviceId": "device-42",
    "tenantId": "acme",
    "callbackUrl": "https://app.example.com/hooks/license",
}


def _request(
    method: str,
    path: str,
    *,
    claims: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    request_id: str | None = "rid-1",
) -> bytes:
    headers = {"content-type": "application/json"}
    if request_id:
        headers["x-request-id"] = request_id
    http: dict[str, Any] = {
        "id": "42",
        "method": method,
        "path": path,
        "host": "api.example",
        "headers": headers,
    }
    attrs: dict[str, Any] = {"request": {"http": http}}
    if claims is not None:
        attrs["metadataContext"] = {
            "filterMetadata": {"envoy.filters.http.jwt_authn": {"jwt_payload": claims}}
        }
    req = json_format.ParseDict({"attributes": attrs}, CheckRequest())
    if body is not None:
        raw = json.dumps(body).encode()
        req.attributes.request.http.raw_body = raw
        req.attributes.request.http.headers["content-length"] = str(len(raw))
    return req.SerializeToString()


ALICE_CLAIMS = {"sub": "alice", "tenant": "acme", "scope": "licenses:write"}
SERVICER_REQUESTS = {
    "allow-activate": _request(
        "POST", "/api/v1/licenses/activate", claims=ALICE_CLAIMS, body=ACTIVATE_BODY
    ),
    "allow-get-unicode-subject": _request(
        "GET", "/api/v1/licenses/L-1", claims={"sub": "é" * 300, "tenant": "東京"}
    ),
    "allow-get-no-tenant": _request("GET", "/api/v1/licenses/L-1", claims={"sub": "bob"}),
    "allow-health-anonymous": _request("GET", "/healthz"),
    "allow-health-id-from-envoy": _request("GET", "/healthz", request_id=None),
    "block-auth-required": _request("GET", "/api/v1/licenses/L-1"),
    "block-tenant-mismatch": _request(
        "POST",
        "/api/v1/licenses/activate",
        claims={"sub": "eve", "tenant": "other"},
        body=ACTIVATE_BODY,
    ),
    "block-unmatched": _request("GET", "/nowhere", claims=ALICE_CLAIMS),
    "invalid-no-method": _request("", "/healthz"),
    "not-a-check-request": b"\x0a\xff\xff\xff",
}


def _message_path(decision: Decision, identity: Identity | None = None, **kw: Any) -> bytes:
    """What the servicer answered before ``decision_to_check_bytes``."""
    return decision_to_check_response(decision, identity, **kw).SerializeToString()


@pytest.mark.usefixtures("fixed_uuid")  # invalid requests get a generated decision id
def test_servicer_bytes_parse_to_the_message_path(monkeypatch: pytest.MonkeyPatch) -> None:
    state = build_state(ServerConfig(policy_path=str(DEMO_POLICY), hot_reload=False))
    servicer = AuthorizationServicer(state)

    async def answers() -> dict[str, CheckResponse]:
        return {
            name: CheckResponse.FromString(await servicer.check(raw, None))
            for name, raw in SERVICER_REQUESTS.items()
        }

    new = asyncio.run(answers())
    monkeypatch.setattr(grpc_service, "decision_to_check_bytes", _message_path)
    old = asyncio.run(answers())
    assert new == old
    assert new["allow-activate"].status.code == 0
    assert [h.header.value for h in new["allow-activate"].ok_response.headers] == [
        "ALLOW",
        "license-activate",
        "alice",
        "acme",
    ]
    assert new["allow-activate"].dynamic_metadata["decisionId"] == "rid-1"
    assert new["allow-health-id-from-envoy"].dynamic_metadata["decisionId"] == "42"
    assert new["allow-get-unicode-subject"].ok_response.headers[2].header.value == "é" * 300
    assert new["block-auth-required"].status.code == 7
    assert new["invalid-no-method"].denied_response.status.code == 400
    assert new["not-a-check-request"].denied_response.status.code == 400
    assert POLICY_VIOLATION in {r.status.message for r in new.values()}
