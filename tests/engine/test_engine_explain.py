"""``explain``: phases, each hit's policy location (file: path), CEL inputs; pure, no claims."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from extauthz.context import RequestContext
from extauthz.engine import InMemoryReplayStore, evaluate
from extauthz.engine.explain import PHASES, explain
from extauthz.policy import load_policy, load_policy_text

DEMO = Path(__file__).resolve().parents[2] / "policies" / "demo.yaml"
ACTIVATE = "/api/v1/licenses/activate"
GOOD = {"licenseKey": "ABCD-1234-EFGH-5678", "deviceId": "dev-1", "tenantId": "acme"}


def _ctx(method: str, path: str, body: Any = None, **identity: Any) -> RequestContext:
    request: dict[str, Any] = {"method": method, "path": path}
    if body is not None:
        request["headers"] = {"content-type": "application/json"}
        request["body"] = {"present": True, "json": {"sample": body}}
    return RequestContext.from_dict({"id": "d-1", "request": request, "identity": identity})


def test_every_phase_is_reported_and_each_hit_points_at_its_policy_location() -> None:
    policy = load_policy(DEMO)
    ctx = _ctx("POST", ACTIVATE, {**GOOD, "tenantId": "globex", "__proto__": {}},
               authenticated=True, subject="alice", tenant="acme")  # fmt: skip
    decision = evaluate(policy, ctx)
    out = explain(policy, ctx, decision)
    assert [p.name for p in out.phases] == list(PHASES)
    ran = {p.name: p.ran for p in out.phases}
    assert ran == {"route": True, "vulnerability": True, "limits": True, "contract": True,
                   "webhook": False, "replay": False, "cel": True}  # fmt: skip
    where = {h.id: (h.phase, h.location) for h in out.hits}
    src = policy.source
    assert where["tenant.binding"] == ("cel", f"{src}: routes[0].rules[1]")
    assert where["vulnerability.prototypePollution"][0] == "vulnerability"
    assert where["vulnerability.prototypePollution"][1].startswith(f"{src}: ")
    assert [h.id for h in out.hits] == list(decision.rule_ids)  # every hit, in order
    (auth, tenant) = out.cel
    assert (auth.id, auth.hit, dict(auth.inputs)) == (
        "auth.required", False, {"identity.authenticated": True}
    )  # fmt: skip
    assert tenant.hit and dict(tenant.inputs) == {
        "identity.tenant": "acme",
        "request.body.tenantId": "globex",
    }
    text = out.to_text()
    assert f"tenant.binding (critical, cel) at {src}: routes[0].rules[1]" in text
    assert 'request.body.tenantId = "globex"' in text
    assert json.loads(json.dumps(out.to_dict()))["hits"][0]["location"]


def test_unmatched_routes_and_missing_inputs_are_explained() -> None:
    policy = load_policy(DEMO)
    ctx = _ctx("GET", "/nowhere/../x")
    out = explain(policy, ctx, evaluate(policy, ctx))
    assert out.route_id is None and out.canonical_path == "/x"
    route = out.phases[0]
    assert route.ran and "no route matched" in route.detail
    assert not any(p.ran for p in out.phases if p.name in ("contract", "webhook", "cel"))
    # A rule reading a body key the request lacks shows the key as missing.
    ctx2 = _ctx("POST", ACTIVATE, {"deviceId": "d"}, authenticated=True, tenant="acme")
    out2 = explain(policy, ctx2, evaluate(policy, ctx2))
    inputs = dict(next(c for c in out2.cel if c.id == "tenant.binding").inputs)
    assert inputs["request.body.tenantId"] == "<missing>"


def test_webhook_phases_and_explain_never_claims_a_replay_id(tmp_path: Path) -> None:
    policy = load_policy_text(
        "policyVersion: '0.1'\n"
        "routes:\n"
        "  - id: hook\n"
        "    match: {method: POST, path: /hook}\n"
        "    webhook: {provider: github, secret: s3cr3t-value}\n",
        source="inline.yaml",
    )
    ctx = _ctx("POST", "/hook", {"a": 1})
    store = InMemoryReplayStore()
    decision = evaluate(policy, ctx, replay_store=store)
    before = len(store._entries) if hasattr(store, "_entries") else None
    out = explain(policy, ctx, decision)
    ran = {p.name: p for p in out.phases}
    assert ran["webhook"].ran and ran["webhook"].location == "inline.yaml: routes[0].webhook"
    assert ran["replay"].ran
    (hit,) = [h for h in out.hits if h.id.startswith("webhook.")]
    assert hit.phase == "webhook" and hit.location == "inline.yaml: routes[0].webhook"
    if before is not None:
        assert len(store._entries) == before
    assert "s3cr3t-value" not in out.to_text() + json.dumps(out.to_dict())
