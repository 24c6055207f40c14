"""RequestContext and Decision: the JSON form round-trips and bad input names the field."""

from __future__ import annotations

import pytest

from extauthz import Decision, InvalidContext, RequestContext, RuleHit
from extauthz.decision import DecisionMetadata, Risk

FULL = {
    "version": "0.1",
    "id": "req-1",
    "timestamp": "2026-11-25T10:00:00.000Z",
    "request": {
        "method": "POST",
        "path": "/api/v1/licenses/activate",
        "routeId": "license-activate",
        "headers": {"Content-Type": "application/json", "X-Tenant-Id": "t-1"},
        "query": {"dry": "1"},
        "contentType": "application/json",
        "host": "api.example.com",
        "scheme": "https",
        "body": {
            "present": True,
            "sizeBytes": 17,
            "sha256": "ab" * 32,
            "raw": '{"licenseKey":1}',
            "json": {"sample": {"licenseKey": 1}},
        },
    },
    "identity": {
        "authenticated": True,
        "subject": "user-1",
        "tenant": "t-1",
        "scopes": ["licenses:write"],
        "claims": {"sub": "user-1"},
    },
    "client": {"ip": "10.0.0.1", "userAgent": "curl/8"},
    "runtime": {"service": "licensing", "env": "prod"},
}


def test_full_context_round_trips_through_json() -> None:
    ctx = RequestContext.from_dict(FULL)
    assert ctx.request.headers["content-type"] == "application/json"  # keys lower-cased
    assert ctx.request.body.raw == b'{"licenseKey":1}'
    assert ctx.request.body.json is not None and ctx.request.body.json.sample == {"licenseKey": 1}
    assert ctx.identity.scopes == ("licenses:write",)
    again = RequestContext.from_json(ctx.to_json())
    assert again == ctx


def test_binary_body_survives_as_base64() -> None:
    ctx = RequestContext.from_dict(
        {"request": {"method": "POST", "path": "/x", "body": {"rawBase64": "/wA="}}}
    )
    assert ctx.request.body.raw == b"\xff\x00"
    assert ctx.request.body.size_bytes == 2 and ctx.request.body.present
    assert RequestContext.from_json(ctx.to_json()).request.body.raw == b"\xff\x00"


def test_minimal_context_gets_defaults() -> None:
    ctx = RequestContext.from_dict({"request": {"method": "GET", "path": "/"}})
    assert not ctx.identity.authenticated
    assert not ctx.request.body.present
    assert ctx.version == "0.1"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], "context"),
        ({}, "request"),
        ({"request": {"path": "/"}}, "request.method"),
        ({"request": {"method": "GET", "path": 3}}, "request.path"),
        ({"request": {"method": "GET", "path": "/", "headers": []}}, "request.headers"),
        (
            {"request": {"method": "GET", "path": "/"}, "identity": {"scopes": [1]}},
            "identity.scopes",
        ),
        ({"request": {"method": "GET", "path": "/", "body": {"sizeBytes": -1}}}, "sizeBytes"),
        ({"request": {"method": "GET", "path": "/", "body": {"rawBase64": "***"}}}, "rawBase64"),
    ],
)
def test_bad_context_names_the_field(data: object, field: str) -> None:
    with pytest.raises(InvalidContext) as info:
        RequestContext.from_dict(data)
    assert field in str(info.value)


def test_invalid_json_context_is_an_invalid_context() -> None:
    with pytest.raises(InvalidContext, match="not valid JSON"):
        RequestContext.from_json("{nope")


def test_decision_round_trips() -> None:
    d = Decision(
        action="BLOCK",
        status_code=403,
        reason="blocked",
        rule_hits=(RuleHit("vulnerability.ssrfInternal", "critical", "internal host"),),
        risk=Risk(90, "critical"),
        metadata=DecisionMetadata("license-activate", "enforce", "sha256:abc", "req-1"),
    )
    data = d.to_dict()
    assert data["ruleHits"][0]["id"] == "vulnerability.ssrfInternal"
    assert data["metadata"]["routeId"] == "license-activate"
    assert Decision.from_dict(data) == d
    assert not d.allowed and d.rule_ids == ("vulnerability.ssrfInternal",)
