"""Table tests: Decision → Envoy CheckResponse protobuf."""

from __future__ import annotations

import json

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from extauthz import Decision, DecisionMetadata, Identity, RuleHit
from extauthz.envoy import decision_to_check_response
from extauthz.envoy.response import INTERNAL_ERROR

META = DecisionMetadata(
    route_id="license-get", mode="enforce", policy_version="sha256:1", request_id="rid"
)
ALICE = Identity(authenticated=True, subject="alice", tenant="acme")


def headers(resp_headers) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {h.header.key: h.header.value for h in resp_headers}


@pytest.mark.parametrize("action", ["ALLOW", "MONITOR"])
def test_allow_and_monitor_pass_with_trusted_headers(action: str) -> None:
    hits = (RuleHit("contract.unknownField", "med", "x"),) if action == "MONITOR" else ()
    resp = decision_to_check_response(Decision(action, rule_hits=hits, metadata=META), ALICE)  # type: ignore[arg-type]
    assert resp.status.code == 0 and resp.WhichOneof("http_response") == "ok_response"
    assert headers(resp.ok_response.headers) == {
        "x-contractshield-decision": action,
        "x-contractshield-route": "license-get",
        "x-contractshield-subject": "alice",
        "x-contractshield-tenant": "acme",
    }
    assert all(h.append_action == h.OVERWRITE_IF_EXISTS_OR_ADD for h in resp.ok_response.headers)
    assert list(resp.ok_response.headers_to_remove) == []
    meta = resp.dynamic_metadata
    assert meta["decisionId"] == "rid" and meta["action"] == action
    assert ("ruleHits" in meta) == (action == "MONITOR")
    if action == "MONITOR":
        assert list(meta["ruleHits"]) == ["contract.unknownField"]


def test_anonymous_allow_removes_client_sent_identity_headers() -> None:
    resp = decision_to_check_response(Decision("ALLOW", metadata=DecisionMetadata()), Identity())
    assert headers(resp.ok_response.headers) == {"x-contractshield-decision": "ALLOW"}
    assert set(resp.ok_response.headers_to_remove) == {
        "x-contractshield-route",
        "x-contractshield-subject",
        "x-contractshield-tenant",
    }
    assert len(resp.dynamic_metadata["decisionId"]) == 32  # generated when the context had none


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (403, "POLICY_VIOLATION"),
        (400, "POLICY_VIOLATION"),
        (503, "POLICY_VIOLATION"),
        (500, INTERNAL_ERROR),
    ],
)
def test_block_is_denied_with_json_body(status: int, code: str) -> None:
    decision = Decision(
        "BLOCK",
        status_code=status,
        reason="tenant mismatch",
        rule_hits=(RuleHit("tenant.binding", "high", "m"), RuleHit("auth.required", "high", "m")),
        metadata=META,
    )
    resp = decision_to_check_response(decision, ALICE, error_code=code)
    assert resp.status.code == 7 and resp.WhichOneof("http_response") == "denied_response"
    denied = resp.denied_response
    assert denied.status.code == status
    assert headers(denied.headers)["content-type"] == "application/json"
    assert json.loads(denied.body) == {
        "error": "tenant mismatch",
        "code": code,
        "ruleHits": ["tenant.binding", "auth.required"],
        "requestId": "rid",
    }
    assert resp.dynamic_metadata["decisionId"] == "rid"
    assert int(resp.dynamic_metadata["statusCode"]) == status


def test_response_round_trips_through_the_wire() -> None:
    resp = decision_to_check_response(Decision("BLOCK", 403, "x", metadata=META))
    again = CheckResponse.FromString(resp.SerializeToString())
    assert again == resp and again.denied_response.status.code == 403
