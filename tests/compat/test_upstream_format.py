"""Upstream ContractShield v0.1 policies, contexts and decisions, unchanged.

The policy (``data/policy.yaml``) and the contexts below are written from upstream's
documented format (``types.ts``, ``policy-language.md``, the Express adapter's context
builder): they are what a user's existing files and PEPs send.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from extauthz.context import RequestContext
from extauthz.engine import InMemoryReplayStore, evaluate
from extauthz.policy import InvalidPolicy, load_policy, load_policy_text

DATA = Path(__file__).parent / "data"
STRIPE_SECRET = "whsec_upstream_compat"
NOW = 1_767_225_600


@pytest.fixture
def policy(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)
    return load_policy(DATA / "policy.yaml")


def express_context(
    method: str,
    path: str,
    body: Any = None,
    *,
    identity: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    raw: str | None = None,
    redacted: bool = False,
) -> dict[str, Any]:
    """A context as upstream's Express PEP builds it (``buildRequestContext``)."""
    text = raw if raw is not None else (json.dumps(body) if body is not None else None)
    request_body: dict[str, Any] = {"present": False, "sizeBytes": 0}
    if text is not None:
        data = text.encode()
        request_body = {
            "present": True,
            "sizeBytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        if raw is not None:
            request_body["raw"] = raw
        if body is not None:
            request_body["json"] = {"redacted": redacted, "sample": body}
    return {
        "version": "0.1",
        "id": "req-1",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "request": {
            "method": method,
            "path": path,
            "headers": {"content-type": "application/json", **(headers or {})},
            "query": {},
            "contentType": "application/json",
            "body": request_body,
        },
        "identity": identity if identity is not None else {"authenticated": False},
        "client": {"ip": "203.0.113.9", "userAgent": "node"},
        "runtime": {"language": "node", "service": "orders", "env": "production"},
    }


ACME = {"authenticated": True, "subject": "u1", "tenant": "acme", "scopes": [], "claims": {}}
ORDER = {"tenantId": "acme", "sku": "SKU-1234", "quantity": 2, "couponCode": "WELCOME-2026"}


def decide(policy, data: dict[str, Any], **kwargs: Any):
    return evaluate(policy, RequestContext.from_dict(data), now=NOW, **kwargs)


def test_the_upstream_policy_loads_unchanged(policy) -> None:
    assert policy.route_ids == ("payments.stripe.v1", "orders.create.v1", "notes.create.v1")
    stripe = policy.route("payments.stripe.v1")
    assert stripe is not None and stripe.webhook is not None and stripe.contract is None
    assert stripe.webhook.secret == STRIPE_SECRET.encode()
    assert stripe.webhook.tolerance == 300 and stripe.webhook.replay_protection
    assert stripe.limits.max_body_bytes == 4096
    assert policy.route("orders.create.v1").limits.max_body_bytes == 2048


def test_clean_call_is_allowed(policy) -> None:
    d = decide(policy, express_context("POST", "/api/orders", ORDER, identity=ACME))
    assert (d.action, d.status_code, d.rule_ids) == ("ALLOW", 200, ())
    out = d.to_dict()
    assert out["version"] == "0.1" and out["redactions"] == []
    assert out["risk"] == {"score": 0, "level": "none"}
    assert out["metadata"]["routeId"] == "orders.create.v1" and out["metadata"]["mode"] == "enforce"


def test_tenant_mismatch_is_blocked(policy) -> None:
    body = {**ORDER, "tenantId": "globex"}
    d = decide(policy, express_context("POST", "/api/orders", body, identity=ACME))
    assert (d.action, d.status_code, d.rule_ids) == ("BLOCK", 403, ("tenant.binding",))
    assert d.to_dict()["risk"] == {"score": 90, "level": "critical"}


def test_unauthenticated_call_is_blocked_and_a_missing_tenant_is_empty(policy) -> None:
    # No identity at all: identity.tenant reads "", so ``identity.tenant != ""`` is false.
    body = {**ORDER, "tenantId": ""}
    d = decide(policy, express_context("POST", "/api/orders", body))
    assert d.action == "BLOCK"
    assert set(d.rule_ids) == {"auth.required", "tenant.binding", "contract.orders"}


def test_a_configuring_rule_renames_its_check_and_keeps_the_status(policy) -> None:
    body = {**ORDER, "note": "x" * 3000}
    d = decide(policy, express_context("POST", "/api/orders", body, identity=ACME))
    assert (d.action, d.status_code) == ("BLOCK", 413)  # still the body limit's status
    assert d.rule_ids == ("limit.body.orders",)
    assert d.rule_hits[0].severity == "high"
    d = decide(policy, express_context("POST", "/api/orders", {**ORDER, "x": 1}, identity=ACME))
    assert d.rule_ids == ("contract.orders", "contract.orders")  # schema and unknown field
    assert "unknown field" in d.rule_hits[1].message


@pytest.mark.parametrize(
    ("body", "hit"),
    [
        ({"text": "hi", "callback": "http://169.254.169.254/latest"}, "vulnerability.ssrfInternal"),
        ({"text": "../../etc/passwd"}, "vulnerability.pathTraversal"),
        ({"text": "hi", "__proto__": {"admin": True}}, "vulnerability.prototypePollution"),
    ],
)
def test_attack_bodies_are_blocked(policy, body: dict[str, Any], hit: str) -> None:
    d = decide(policy, express_context("POST", "/api/notes", body, identity=ACME))
    assert d.action == "BLOCK" and hit in d.rule_ids


def test_monitor_rules_of_every_kind_report_without_blocking(policy) -> None:
    body = {"text": "{{7*7}} " + "x" * 80}
    d = decide(policy, express_context("POST", "/api/notes", body, identity=ACME))
    assert (d.action, d.status_code) == ("MONITOR", 200)
    assert d.rule_ids == ("notes.size", "notes.template.tokens")
    assert [h.severity for h in d.rule_hits] == ["low", "med"]


def test_redacted_sample_checks_structure_not_masked_values(policy) -> None:
    masked = {**ORDER, "couponCode": "***", "sku": "***"}
    d = decide(policy, express_context("POST", "/api/orders", masked, identity=ACME, redacted=True))
    assert d.action == "ALLOW", d.rule_hits
    # Unredacted, the same values break the schema.
    d = decide(policy, express_context("POST", "/api/orders", masked, identity=ACME))
    assert d.rule_ids == ("contract.orders",)
    # Structure still counts: a missing required key and an unknown key are refused.
    broken = {k: v for k, v in masked.items() if k != "quantity"} | {"extra": 1}
    d = decide(policy, express_context("POST", "/api/orders", broken, identity=ACME, redacted=True))
    assert d.rule_ids == ("contract.orders", "contract.orders")


def stripe_delivery(event: dict[str, Any], *, secret: str = STRIPE_SECRET, **extra: Any):
    raw = json.dumps(event, separators=(",", ":"))
    signed = f"{NOW}.{raw}".encode()
    sig = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    ctx = express_context(
        "POST",
        "/hooks/stripe",
        event,
        raw=raw,
        headers={"stripe-signature": f"t={NOW},v1={sig}"},
    )
    ctx.update(extra)
    return ctx


def test_stripe_webhooks_valid_forged_and_replayed(policy) -> None:
    store = InMemoryReplayStore()
    event = {"id": "evt_1", "type": "invoice.paid"}
    d = decide(policy, stripe_delivery(event), replay_store=store)
    assert (d.action, d.rule_ids) == ("ALLOW", ())
    d = decide(policy, stripe_delivery(event), replay_store=store)
    assert (d.action, d.rule_ids) == ("BLOCK", ("webhook.stripe.replay",))
    assert d.rule_hits[0].severity == "critical"  # the rule's severity, not the built-in one
    # Forged with upstream's test hints claiming the opposite: the hints are never trusted.
    forged = stripe_delivery(
        {"id": "evt_2", "type": "invoice.paid"},
        secret="whsec_wrong",
        webhook={"provider": "stripe", "signatureValid": True, "replayed": False},
    )
    d = decide(policy, forged, replay_store=store)
    assert (d.action, d.rule_ids) == ("BLOCK", ("webhook.stripe.signature",))
    other = stripe_delivery({"id": "evt_3", "type": "charge.failed"})
    d = decide(policy, other, replay_store=store)
    assert (d.action, d.rule_ids) == ("BLOCK", ("stripe.event.allowlist",))


def test_unmatched_routes_score_as_upstream() -> None:
    base = 'policyVersion: "0.1"\nroutes: []\ndefaults: {unmatchedRouteAction: %s}\n'
    ctx = express_context("GET", "/nowhere")
    d = decide(load_policy_text(base % "monitor"), ctx)
    assert (d.action, d.to_dict()["risk"]) == ("MONITOR", {"score": 30, "level": "med"})
    assert d.rule_hits[0].severity == "med"
    d = decide(load_policy_text(base % "block"), ctx)
    assert (d.action, d.status_code, d.to_dict()["risk"]) == (
        "BLOCK",
        403,
        {"score": 60, "level": "high"},
    )
    assert d.rule_hits[0].severity == "high"


def refusals(text: str) -> dict[str, str]:
    with pytest.raises(InvalidPolicy) as info:
        load_policy_text('policyVersion: "0.1"\nroutes:\n' + text, base_dir=DATA)
    return {p.path: p.reason for p in info.value.errors}


def test_strictness_is_kept_with_exact_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET", raising=False)
    found = refusals(
        "- id: a\n  match: {path: /a}\n  rules:\n"
        "    - {id: x, type: vulnerability, config: {}}\n"  # unknown type
        "    - {id: y, type: cel, expr: 'true', config: {expr: 'true'}}\n"  # expr outside config
        "    - {id: z, type: cel, action: allow, config: {expr: 'true'}}\n"
        "- id: b\n  match: {path: /b}\n"
        "  webhook: {provider: stripe, secret: s, toleranceSeconds: 5, timestampTolerance: 5}\n"
        "- id: c\n  match: {path: /c}\n  webhook: {provider: github}\n"
        "- id: d\n  match: {path: /d}\n  limits: {maxBodyBytes: 10}\n"
        "  rules: [{id: l, type: limit, config: {maxBodyBytes: 20}}]\n"
        "- id: e\n  match: {path: /e}\n"
        "  contract: {openapiRef: ./openapi.yaml#/paths/~1e/post}\n"
        "- id: f\n  match: {path: /f}\n"
        "  webhook: {provider: stripe, secret: s, header: x-signature}\n"
        "- id: g\n  match: {path: /g}\n  rules: [{id: contract.schema.invalid, type: limit,"
        " config: {maxBodyBytes: 1}}]\n"
        "- id: h\n  match: {path: /h}\n  rules: [{id: s, type: webhook-signature}]\n"
    )
    assert "must be one of 'cel', 'webhook'" in found["routes[0].rules[0].type"]
    assert "unknown key" in found["routes[0].rules[1].expr"]
    assert "use 'block' or 'monitor'" in found["routes[0].rules[2].action"]
    assert "deprecated name of timestampTolerance" in found["routes[1].webhook.toleranceSeconds"]
    assert (
        "set the environment variable GITHUB_WEBHOOK_SECRET" in found["routes[2].webhook.provider"]
    )
    assert (
        "already set at routes[3].limits.maxBodyBytes"
        in found["routes[3].rules[0].config.maxBodyBytes"]
    )
    assert "OpenAPI file not found" in found["routes[4].contract.openapiRef"]
    assert "'stripe-signature'" in found["routes[5].webhook.header"]
    assert "id of another built-in check" in found["routes[6].rules[0].id"]
    assert "needs a provider" in found["routes[7].rules[0]"]


def test_cel_environment_as_upstream_documents(policy) -> None:
    text = 'policyVersion: "0.1"\nroutes:\n- id: r\n  match: {path: /r}\n  rules:\n' + "".join(
        f"    - {{id: e{i}, type: cel, config: {{expr: {json.dumps(expr)}}}}}\n"
        for i, expr in enumerate(
            [
                "request.body.present == true && request.body.sizeBytes > 0",
                "request.body.json.sample.a == 1 && request.body.a == 1",
                "request.body.json.redacted == false",
                "request.routeId == 'r' && request.contentType == 'application/json'",
                "client.userAgent == 'node' && client.ip == '203.0.113.9'",
                "runtime.language == 'node' && runtime.service == 'orders'",
                "identity.subject == '' && identity.scopes == [] && identity.claims == {}",
                "webhook.provider == '' && webhook.signatureValid == false",
                "has(request.body.json) && size(request.body) == 3",
            ]
        )
    )
    p = load_policy_text(text)
    d = decide(p, express_context("POST", "/r", {"a": 1}))
    assert (d.action, d.rule_ids) == ("ALLOW", ())


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("request.body.raw == ''", "request.body.json.sample.raw"),
        ("request.body.sha256 == ''", "reserved"),
        ("request.body.json.x == 1", "'sample' and 'redacted' only"),
        ("request.body['present'] == 1", "ambiguous"),
        ("webhook.replayed == false", "webhook-replay rule"),
        ("request.bodyPresent", "request has no field 'bodyPresent'"),
    ],
)
def test_cel_reads_without_one_meaning_are_refused(expr: str, reason: str) -> None:
    found = refusals(
        f"- id: r\n  match: {{path: /r}}\n  rules: [{{id: x, type: cel, config: {{expr: {json.dumps(expr)}}}}}]\n"
    )
    assert reason in found["routes[0].rules[0].config.expr"]


def test_context_json_round_trips_upstream_fields() -> None:
    data = express_context("POST", "/api/orders", ORDER, identity=ACME, redacted=True)
    data["webhook"] = {"provider": "stripe", "signatureValid": True}
    ctx = RequestContext.from_dict(copy.deepcopy(data))
    assert ctx.runtime.language == "node" and ctx.request.body.json.redacted is True
    out = ctx.to_dict()
    assert out["request"]["body"]["json"] == {"sample": ORDER, "redacted": True}
    assert out["runtime"] == data["runtime"]
    raw = RequestContext.from_dict(
        {
            "request": {
                "method": "POST",
                "path": "/x",
                "body": {"raw": "aGk=", "rawEncoding": "base64"},
            }
        }
    )
    assert raw.request.body.raw == b"hi"


def test_explain_places_a_renamed_hit_in_its_check_and_its_rule(policy) -> None:
    from extauthz.engine.explain import explain

    ctx = RequestContext.from_dict(
        express_context("POST", "/api/orders", {**ORDER, "note": "x" * 3000}, identity=ACME)
    )
    d = evaluate(policy, ctx, now=NOW)
    (hit,) = explain(policy, ctx, d).hits
    assert (hit.id, hit.phase) == ("limit.body.orders", "limits")
    assert hit.location is not None and hit.location.endswith("policy.yaml: routes[1].rules[2]")


@pytest.mark.parametrize(
    ("rule", "delivery", "hit"),
    [
        ("{id: sig, type: webhook-signature, action: monitor}", "forged", "sig"),
        ("{id: rep, type: webhook-replay, action: monitor}", "replayed", "rep"),
        ("{id: lim, type: limit, action: monitor, config: {maxBodyBytes: 8}}", "valid", "lim"),
        (
            "{id: con, type: contract, action: monitor, config: {requestSchema: {required: [x]}}}",
            "valid",
            "con",
        ),
        ("{id: cel, type: cel, action: monitor, config: {expr: 'false'}}", "valid", "cel"),
    ],
)
def test_action_monitor_is_honoured_for_every_rule_type(rule: str, delivery: str, hit: str) -> None:
    policy = load_policy_text(
        'policyVersion: "0.1"\nroutes:\n- id: hook\n  match: {path: /hooks/stripe}\n'
        f"  webhook: {{provider: stripe, secret: {STRIPE_SECRET}}}\n  rules: [{rule}]\n"
    )
    store = InMemoryReplayStore()
    event = {"id": f"evt_{hit}", "type": "invoice.paid"}
    if delivery == "replayed":
        assert decide(policy, stripe_delivery(event), replay_store=store).action == "ALLOW"
    ctx = stripe_delivery(event, secret="whsec_wrong" if delivery == "forged" else STRIPE_SECRET)
    d = decide(policy, ctx, replay_store=store)
    assert (d.action, d.status_code, d.rule_ids) == ("MONITOR", 200, (hit,))
    # The same rule with action: block blocks.
    blocking = load_policy_text(
        'policyVersion: "0.1"\nroutes:\n- id: hook\n  match: {path: /hooks/stripe}\n'
        f"  webhook: {{provider: stripe, secret: {STRIPE_SECRET}}}\n"
        f"  rules: [{rule.replace('monitor', 'block')}]\n"
    )
    store = InMemoryReplayStore()
    if delivery == "replayed":
        decide(blocking, stripe_delivery(event), replay_store=store)
    assert decide(blocking, ctx, replay_store=store).action == "BLOCK"
