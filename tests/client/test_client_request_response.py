"""The client's pure halves: description → CheckRequest (read back by the server's own
adapter) and CheckResponse (built by the server's own response builder) → Decision."""

from __future__ import annotations

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from extauthz import Decision, DecisionMetadata, Identity, InvalidContext, RuleHit
from extauthz.client import (
    DEFAULT_CACHE_IGNORED_HEADERS,
    ClaimNames,
    build_check_request,
    cache_key,
    describe,
    to_verdict,
)
from extauthz.envoy.request import AdapterOptions, check_request_to_context
from extauthz.envoy.response import decision_to_check_response

ALICE = Identity(
    authenticated=True, subject="alice", tenant="t-1", scopes=("licenses:write", "read")
)


def test_check_request_reads_back_like_envoy_sent_it() -> None:
    inp = describe(
        "post",
        "/api/v1/licenses/activate?dry=1&x=a&x=b",
        headers=[("Content-Type", "application/json"), ("X-Tag", "a"), ("x-tag", "b")],
        body=b'{"licenseKey":"k"}',
        identity=Identity(
            authenticated=True,
            subject="alice",
            tenant="t-1",
            scopes=("a", "b"),
            claims={"iss": "demo", "n": 3},
        ),
        client_ip="10.1.2.3",
        host="api.example.com",
        scheme="https",
        context_extensions={"route_id": "license-activate", "service": "licenses"},
    )
    ctx = check_request_to_context(build_check_request(inp))
    r = ctx.request
    assert (r.method, r.path, r.query) == (
        "POST",
        "/api/v1/licenses/activate",
        {"dry": "1", "x": "a,b"},
    )
    assert r.headers["content-type"] == "application/json" and r.headers["x-tag"] == "a,b"
    assert not any(k.startswith(":") for k in r.headers)
    assert (r.host, r.scheme, r.route_id) == ("api.example.com", "https", "license-activate")
    assert r.body.present and r.body.raw == b'{"licenseKey":"k"}' and r.body.size_bytes == 18
    assert ctx.identity == Identity(
        authenticated=True,
        subject="alice",
        tenant="t-1",
        scopes=("a", "b"),
        claims={"iss": "demo", "n": 3, "sub": "alice", "tenant": "t-1", "scope": "a b"},
    )
    assert ctx.client.ip == "10.1.2.3" and ctx.runtime.service == "licenses"


def test_claim_names_follow_the_server_settings() -> None:
    names = ClaimNames(subject="uid", tenant="org", scopes="scp")
    inp = describe("GET", "/x", identity=ALICE)
    ctx = check_request_to_context(
        build_check_request(inp, names),
        AdapterOptions(subject_claim="uid", tenant_claim="org", scopes_claim="scp"),
    )
    assert (ctx.identity.subject, ctx.identity.tenant) == ("alice", "t-1")
    assert ctx.identity.scopes == ("licenses:write", "read")
    assert ctx.identity.claims["scp"] == ["licenses:write", "read"]


def test_anonymous_and_raw_claims() -> None:
    anon = check_request_to_context(build_check_request(describe("GET", "/x")))
    assert not anon.identity.authenticated
    unauth = describe("GET", "/x", identity=Identity(authenticated=False, subject="eve"))
    assert not check_request_to_context(build_check_request(unauth)).identity.authenticated
    raw = describe("GET", "/x", identity={"sub": "bob", "tenant": "t-9", "scope": "a"})
    ident = check_request_to_context(build_check_request(raw)).identity
    assert (ident.subject, ident.tenant, ident.scopes) == ("bob", "t-9", ("a",))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "", "path": "/x"}, "method"),
        ({"method": "GET", "path": ""}, "path"),
        ({"method": "GET", "path": "/x", "body": "text"}, "body"),
        ({"method": "GET", "path": "/x", "headers": {"a": 1}}, "headers"),
        ({"method": "GET", "path": "/x", "identity": {"sub": object()}}, "identity"),
        ({"method": "GET", "path": "/x", "identity": "alice"}, "identity"),
    ],
)
def test_bad_descriptions_are_refused_with_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidContext, match=message):
        describe(**kwargs)


BASE = {
    "headers": {"content-type": "application/json", "authorization": "Bearer a"},
    "body": b'{"tenantId":"t-1"}',
    "identity": ALICE,
    "client_ip": "10.0.0.1",
}


def key(version: str | None = "v1", **changes: object) -> bytes:
    kw = {**BASE, **changes}
    method = kw.pop("method", "POST")
    path = kw.pop("path", "/api/v1/licenses/activate?a=1")
    return cache_key(describe(method, path, **kw), version, DEFAULT_CACHE_IGNORED_HEADERS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"method": "PUT"},
        {"path": "/api/v1/licenses/activate?a=2"},
        {"path": "/api/v1/licenses/activate"},
        {"headers": {"content-type": "application/json", "authorization": "Bearer b"}},
        {"headers": {"content-type": "application/json"}},
        {"headers": {**BASE["headers"], "x-anything": "1"}},  # type: ignore[dict-item]
        {"body": b'{"tenantId":"t-2"}'},
        {"body": None},
        {"body": b""},
        {
            "identity": Identity(
                authenticated=True, subject="alice", tenant="t-2", scopes=ALICE.scopes
            )
        },
        {
            "identity": Identity(
                authenticated=True, subject="bob", tenant="t-1", scopes=ALICE.scopes
            )
        },
        {"identity": Identity(authenticated=True, subject="alice", tenant="t-1")},
        {
            "identity": Identity(
                authenticated=True,
                subject="alice",
                tenant="t-1",
                scopes=ALICE.scopes,
                claims={"admin": True},
            )
        },
        {"identity": None},
        {"client_ip": "10.0.0.2"},
        {"host": "other.example"},
        {"scheme": "https"},
        {"context_extensions": {"route_id": "x"}},
    ],
)
def test_every_input_the_server_reads_changes_the_key(changes: dict) -> None:
    assert key(**changes) != key()


def test_policy_version_is_in_the_key() -> None:
    assert key("v2") != key("v1") and key(None) != key("v1")


def test_tracing_headers_and_header_case_do_not_change_the_key() -> None:
    traced = {**BASE["headers"], "x-request-id": "r-1", "traceparent": "00-abc-def-01"}  # type: ignore[dict-item]
    assert key(headers=traced) == key()
    upper = {"Content-Type": "application/json", "Authorization": "Bearer a"}
    assert key(headers=upper) == key()
    # Nothing is ignored when the caller says so.
    strict = describe("GET", "/x", headers={"x-request-id": "1"})
    strict2 = describe("GET", "/x", headers={"x-request-id": "2"})
    assert cache_key(strict, None, frozenset()) != cache_key(strict2, None, frozenset())


META = DecisionMetadata(
    route_id="license-get", mode="enforce", policy_version="sha256:1", request_id="rid-1"
)


def test_allow_maps_back_with_version_and_is_cacheable() -> None:
    resp = decision_to_check_response(Decision("ALLOW", metadata=META), ALICE)
    v = to_verdict(resp)
    assert v.decision.action == "ALLOW" and v.decision.status_code == 200
    m = v.decision.metadata
    assert (m.route_id, m.policy_version, m.request_id) == ("license-get", "sha256:1", "rid-1")
    assert v.policy_version == "sha256:1" and v.cacheable


def test_monitor_keeps_its_rule_hits() -> None:
    d = Decision(
        "MONITOR",
        reason="unknown field",
        rule_hits=(RuleHit("contract.unknownField", "med", "m"),),
        metadata=META,
    )
    v = to_verdict(decision_to_check_response(d, ALICE))
    assert v.decision.action == "MONITOR" and v.decision.rule_ids == ("contract.unknownField",)
    assert v.decision.reason == "unknown field" and v.cacheable


def test_ok_answers_read_the_headers_when_the_summary_lacks_them() -> None:
    """ContractShield's summary carries action, route and decision id; an OK answer without
    them (another server, or metadata stripped) is read from its headers: same decision."""
    for action in ("ALLOW", "MONITOR"):
        full = decision_to_check_response(Decision(action, metadata=META), ALICE)
        headers_only = CheckResponse()
        headers_only.CopyFrom(full)
        headers_only.ClearField("dynamic_metadata")
        headers_only.ok_response.ClearField("dynamic_metadata")
        assert {h.header.key for h in headers_only.ok_response.headers} >= {
            "x-contractshield-decision",
            "x-contractshield-route",
        }
        a, b = to_verdict(full).decision, to_verdict(headers_only).decision
        assert (
            (a.action, a.metadata.route_id)
            == (b.action, b.metadata.route_id)
            == (
                action,
                "license-get",
            )
        )
    # no summary and no decision header: ALLOW, as Envoy reads any OK
    bare = CheckResponse()
    bare.ok_response.headers.add().header.key = "x-contractshield-route"
    assert to_verdict(bare).decision.action == "ALLOW"


def test_no_store_and_versionless_answers_are_not_cacheable() -> None:
    assert not to_verdict(
        decision_to_check_response(Decision("ALLOW", metadata=META), cacheable=False)
    ).cacheable
    unversioned = Decision("ALLOW", metadata=DecisionMetadata(route_id="r"))
    assert not to_verdict(decision_to_check_response(unversioned)).cacheable


def test_block_maps_status_reason_hits_and_id() -> None:
    d = Decision(
        "BLOCK",
        status_code=403,
        reason="tenant mismatch",
        rule_hits=(RuleHit("tenant.binding", "high", "m"),),
        metadata=META,
    )
    v = to_verdict(decision_to_check_response(d, ALICE))
    assert not v.cacheable
    assert (v.decision.action, v.decision.status_code, v.decision.reason) == (
        "BLOCK",
        403,
        "tenant mismatch",
    )
    assert v.decision.rule_ids == ("tenant.binding",)
    assert (
        v.decision.metadata.request_id == "rid-1" and v.decision.metadata.route_id == "license-get"
    )


def test_foreign_server_answers() -> None:
    ok = CheckResponse()
    ok.status.code = 0
    v = to_verdict(ok)
    assert v.decision.action == "ALLOW" and not v.cacheable
    denied = CheckResponse()
    denied.status.code = 7
    v = to_verdict(denied)
    assert (v.decision.action, v.decision.status_code) == ("BLOCK", 403)  # Envoy's default
    denied.denied_response.status.code = 401
    denied.denied_response.body = "go away"
    v = to_verdict(denied)
    assert (v.decision.status_code, v.decision.reason) == (401, "go away")
