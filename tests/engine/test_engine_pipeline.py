"""The pipeline end to end: modes, status codes, risk, unmatched routes, metadata, order."""

from __future__ import annotations

import json

import pytest

from extauthz.context import Identity, RequestContext
from extauthz.decision import Decision
from extauthz.engine import InMemoryReplayStore, evaluate, evaluate_async
from extauthz.engine.pipeline import Pending, begin, complete, prepare
from extauthz.policy import load_policy_text
from extauthz.webhooks import sign

BASE = """
policyVersion: "0.1"
defaults:
  mode: {mode}
  unmatchedRouteAction: {unmatched}
  response: {{blockStatusCode: 451, malformedStatusCode: 422}}
  limits: {{maxBodyBytes: 200}}
  vulnerabilityChecks: {{commandInjection: true}}
routes:
  - id: orders
    match: {{method: POST, path: /orders}}
    contract:
      requestSchema:
        type: object
        properties: {{item: {{type: string}}}}
        required: [item]
      rejectUnknownFields: true
    rules:
      - {{id: auth.required, type: cel, severity: med, config: {{expr: identity.authenticated}}}}
  - id: orders-monitored
    mode: monitor
    match: {{method: POST, path: /orders/monitored}}
    rules:
      - {{id: auth.required, type: cel, config: {{expr: identity.authenticated}}}}
  - id: open
    match: {{method: GET, path: /open}}
    vulnerability: {{prototypePollution: false, pathTraversal: false, ssrfInternal: false,
                     commandInjection: false}}
"""
USER = Identity(authenticated=True, subject="u")


def make(mode: str = "enforce", unmatched: str = "block"):
    return load_policy_text(BASE.format(mode=mode, unmatched=unmatched))


def test_clean_request_allows_with_metadata(ctx) -> None:
    p = make()
    d = evaluate(p, ctx("POST", "/orders", body={"item": "x"}, identity=USER))
    assert d.action == "ALLOW" and d.status_code == 200 and d.reason == "allowed"
    assert d.risk.score == 0 and d.risk.level == "none"
    assert d.metadata.route_id == "orders"
    assert d.metadata.mode == "enforce"
    assert d.metadata.policy_version == p.version
    assert d.metadata.request_id == "req-1"


def test_enforce_blocks_with_the_policy_status(ctx) -> None:
    d = evaluate(make(), ctx("POST", "/orders", body={"item": "x"}))
    assert d.action == "BLOCK" and d.status_code == 451
    assert d.rule_ids == ("auth.required",)
    assert d.risk.level == "high" and d.risk.score == 60
    assert d.reason.startswith("auth.required")


def test_critical_hit_makes_critical_risk(ctx) -> None:
    d = evaluate(make(), ctx("POST", "/orders", body={"item": "x; rm -rf /"}, identity=USER))
    assert d.rule_ids == ("vulnerability.commandInjection",)
    assert d.risk.level == "critical" and d.risk.score == 90


def test_malformed_status_and_413(ctx) -> None:
    p = make()
    d = evaluate(
        p, ctx("POST", "/orders", raw=b"{oops", content_type="application/json", identity=USER)
    )
    assert d.status_code == 422 and d.rule_ids == ("request.body.malformed",)
    big = json.dumps({"item": "x" * 300})
    d = evaluate(p, ctx("POST", "/orders", raw=big, content_type="application/json", identity=USER))
    assert d.status_code == 413 and d.rule_ids == ("limit.body.max",)


def test_monitor_mode_reports_but_lets_through(ctx) -> None:
    p = make(mode="monitor")
    d = evaluate(p, ctx("POST", "/orders", body={"item": 1, "x": 2}))
    assert d.action == "MONITOR" and d.status_code == 200 and d.allowed
    assert d.rule_ids == ("contract.schema.invalid", "contract.unknownField", "auth.required")
    assert "would block" in d.reason
    assert d.metadata.mode == "monitor"


def test_route_mode_overrides_default(ctx) -> None:
    d = evaluate(make(), ctx("POST", "/orders/monitored", body={}))
    assert d.action == "MONITOR" and d.metadata.mode == "monitor"


@pytest.mark.parametrize(
    ("unmatched", "action", "ids"),
    [
        ("block", "BLOCK", ("route.unmatched",)),
        ("monitor", "MONITOR", ("route.unmatched",)),
        ("allow", "ALLOW", ()),
    ],
)
def test_unmatched_route_action(unmatched: str, action: str, ids: tuple[str, ...], ctx) -> None:
    d = evaluate(make(unmatched=unmatched), ctx("GET", "/elsewhere"))
    assert d.action == action and d.rule_ids == ids
    assert d.metadata.route_id is None


def test_unmatched_routes_still_get_default_checks(ctx) -> None:
    d = evaluate(make(unmatched="allow"), ctx("GET", "/x", query={"u": "http://127.0.0.1/"}))
    assert d.rule_ids == ("vulnerability.ssrfInternal",)


def test_ambiguous_path_is_a_hit_not_a_bypass(ctx) -> None:
    d = evaluate(make(unmatched="allow"), ctx("GET", "/op%65n"))  # decodes to /open
    assert d.action == "ALLOW" and d.metadata.route_id == "open"
    d = evaluate(make(unmatched="allow"), ctx("GET", "/open%2F..%2Fadmin"))
    assert d.action == "BLOCK" and "request.path.ambiguous" in d.rule_ids


def test_hits_follow_phase_order(ctx) -> None:
    p = make()
    body = {"item": 5, "__proto__": {"a": 1}}
    d = evaluate(p, ctx("POST", "/orders", body=body))
    assert d.rule_ids == (
        "vulnerability.prototypePollution",
        "contract.schema.invalid",
        "contract.unknownField",
        "auth.required",
    )


def test_route_id_from_the_proxy_pins_the_route(ctx) -> None:
    from dataclasses import replace

    p = make(unmatched="block")
    c = ctx("GET", "/somewhere/else")
    pinned = replace(c, request=replace(c.request, route_id="open"))
    assert evaluate(p, pinned).metadata.route_id == "open"
    unknown = replace(c, request=replace(c.request, route_id="nope"))
    assert evaluate(p, unknown).rule_ids == ("route.unmatched",)


def test_method_is_case_insensitive(ctx) -> None:
    d = evaluate(make(), ctx("post", "/orders", body={"item": "x"}, identity=USER))
    assert d.action == "ALLOW"


def test_evaluate_never_raises_on_engine_bugs(ctx) -> None:
    from extauthz.engine.pipeline import Phases

    def boom(*a, **k):
        raise ZeroDivisionError("bug")

    d = evaluate(make(), ctx("GET", "/open"), phases=Phases(canonicalize=boom))
    assert d.action == "BLOCK" and d.status_code == 500
    assert d.rule_ids == ("engine.internalError",)


def test_decisions_are_deterministic(ctx) -> None:
    p = make()
    c = ctx("POST", "/orders", body={"item": 1, "z": "../x"})
    first = evaluate(p, c).to_dict()
    assert all(evaluate(p, c).to_dict() == first for _ in range(5))


def test_demo_policy_facts(demo, ctx) -> None:
    """What other components rely on (see the team brief)."""
    assert demo.route_ids == (
        "license-activate",
        "license-get",
        "stripe-webhook",
        "github-webhook",
        "admin",
        "health",
    )
    assert demo.max_body_bytes == 1_048_576
    assert demo.version.startswith("sha256:") and len(demo.version) == len("sha256:") + 12
    assert [f.name for f in demo.files] == ["demo.yaml", "license-activate.json"]
    d = demo.defaults
    assert (d.mode, d.unmatched_route_action, d.block_status_code, d.malformed_status_code) == (
        "enforce",
        "block",
        403,
        400,
    )
    assert (d.limits.max_body_bytes, d.limits.max_json_depth, d.limits.max_array_length) == (
        1_048_576,
        32,
        1000,
    )
    assert evaluate(demo, ctx("GET", "/healthz")).action == "ALLOW"
    assert evaluate(demo, ctx("PUT", "/admin")).rule_ids == ("admin.denied",)


def test_prepare_builds_only_needed_cel_fields(demo) -> None:
    route = demo.route("license-activate")
    assert route is not None and route.cel is not None
    assert [name for name, _ in route.cel.flat] == [
        "cs__identity__authenticated", "cs__identity__tenant", "cs__request__body",
    ]  # fmt: skip
    assert route.cel.nested == ()
    assert callable(prepare)


def test_context_round_trip_gives_the_same_decision(demo, ctx) -> None:
    c = ctx(
        "POST",
        "/api/v1/licenses/activate",
        body={"licenseKey": "ABCD-1234-EFGH-5678", "deviceId": "d", "tenantId": "t"},
        identity=Identity(True, "u", "t"),
    )
    again = RequestContext.from_json(c.to_json())
    assert evaluate(demo, c).to_dict() == evaluate(demo, again).to_dict()
    assert evaluate(demo, c).action == "ALLOW"


def test_hit_messages_stay_short_for_huge_inputs(ctx) -> None:
    p = make()
    d = evaluate(p, ctx("GET", "/" + "x" * 50_000))
    assert d.rule_ids == ("route.unmatched",) and len(d.rule_hits[0].message) < 300
    sample = {"k" * 50_000: {"__proto__": 1}, "item": "i"}
    d = evaluate(p, ctx("POST", "/orders", sample=sample, content_type="application/json"))
    assert all(len(h.message) <= 300 for h in d.rule_hits)
    assert "vulnerability.prototypePollution" in d.rule_ids


def test_sniffed_json_is_checked_but_still_breaks_a_json_contract(ctx) -> None:
    p = make()
    raw = b'{"item": "x", "__proto__": {"a": 1}}'
    d = evaluate(p, ctx("POST", "/orders", raw=raw, content_type="text/plain", identity=USER))
    assert d.rule_ids == ("vulnerability.prototypePollution", "contract.schema.invalid")
    assert "not JSON" in d.rule_hits[1].message


def test_one_policy_shared_by_threads(demo, ctx) -> None:
    """A CompiledPolicy is immutable: concurrent evaluations agree with a serial one."""
    from concurrent.futures import ThreadPoolExecutor

    contexts = [
        ctx("GET", "/api/v1/licenses/L1", identity=USER),
        ctx("GET", "/admin/x"),
        ctx("POST", "/api/v1/licenses/activate",
            body={"licenseKey": "ABCD-1234-EFGH-5678", "deviceId": "d", "tenantId": "t"},
            identity=Identity(True, "u", "t")),
        ctx("POST", "/api/v1/licenses/activate", body={"__proto__": 1}),
    ] * 50  # fmt: skip
    serial = [evaluate(demo, c).to_dict() for c in contexts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda c: evaluate(demo, c).to_dict(), contexts))
    assert parallel == serial


HOOK_POLICY = """
policyVersion: "0.1"
defaults: {mode: enforce}
routes:
  - id: hook
    match: {method: POST, path: /hook}
    webhook: {provider: stripe, secret: whsec_x, timestampTolerance: 300}
    rules:
      - {id: small.amount, type: cel, action: monitor, config: {expr: "request.body.amount < 100"}}
  - id: open
    match: {method: GET, path: /open}
"""
HOOK_NOW = 1_767_225_600


def hook_ctx(ctx, amount: int = 5) -> RequestContext:
    body = json.dumps({"id": "evt_1", "type": "x", "amount": amount}).encode()
    headers = sign("stripe", "whsec_x", body, timestamp=HOOK_NOW)
    return ctx("POST", "/hook", raw=body, content_type="application/json", headers=headers)


def test_begin_decides_without_a_claim_and_stops_before_one(ctx) -> None:
    p = load_policy_text(HOOK_POLICY)
    plain = begin(p, ctx("GET", "/open"), HOOK_NOW)
    assert isinstance(plain, Decision) and plain == evaluate(p, ctx("GET", "/open"))
    pending = begin(p, hook_ctx(ctx), HOOK_NOW)
    assert isinstance(pending, Pending)
    assert (pending.replay_key, pending.replay_ttl) == ("webhook:hook:evt_1", 660)
    unsigned = ctx("POST", "/hook", body={"id": "evt_1"})
    assert isinstance(begin(p, unsigned, HOOK_NOW), Decision)  # bad signature: nothing to claim


@pytest.mark.parametrize(
    ("claimed", "fail_open", "action", "status", "ids"),
    [
        (True, False, "MONITOR", 200, ("small.amount",)),
        (False, False, "BLOCK", 403, ("webhook.stripe.replay", "small.amount")),
        (
            ConnectionError("down"),
            False,
            "BLOCK",
            503,
            ("webhook.stripe.replayStoreUnavailable", "small.amount"),
        ),
        (
            ConnectionError("down"),
            True,
            "MONITOR",
            200,
            ("webhook.stripe.replayStoreUnavailable", "small.amount"),
        ),
    ],
)
def test_complete_puts_the_claim_before_advisory_cel_hits(  # type: ignore[no-untyped-def]
    ctx, claimed, fail_open: bool, action: str, status: int, ids: tuple[str, ...]
) -> None:
    p = load_policy_text(HOOK_POLICY)
    pending = begin(p, hook_ctx(ctx, amount=500), HOOK_NOW)
    assert isinstance(pending, Pending) and pending.advisory == {0}
    d = complete(pending, claimed, fail_open)
    assert (d.action, d.status_code, d.rule_ids) == (action, status, ids)
    if action == "BLOCK":  # the CEL hit stayed advisory after the shift: not counted as "+1 more"
        assert d.reason.startswith(ids[0]) and "more" not in d.reason


def test_complete_never_raises_on_engine_bugs(ctx, monkeypatch) -> None:
    import extauthz.engine.pipeline as pipeline

    p = load_policy_text(HOOK_POLICY)
    pending = begin(p, hook_ctx(ctx), HOOK_NOW)
    assert isinstance(pending, Pending)

    def boom(*a, **k):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(pipeline, "finish", boom)
    d = complete(pending, True, False)
    assert (d.action, d.status_code, d.rule_ids) == ("BLOCK", 500, ("engine.internalError",))
    assert d.metadata.request_id == pending.ctx.id


async def test_evaluate_async_awaits_nothing_without_a_claim(ctx) -> None:
    p = load_policy_text(HOOK_POLICY)
    coro = evaluate_async(p, ctx("GET", "/open"))
    with pytest.raises(StopIteration) as done:  # finished on its first step: never suspended
        coro.send(None)
    assert done.value.value == evaluate(p, ctx("GET", "/open"))
    store = InMemoryReplayStore()
    first = await evaluate_async(p, hook_ctx(ctx), replay_store=store, now=HOOK_NOW)
    again = await evaluate_async(p, hook_ctx(ctx), replay_store=store, now=HOOK_NOW)
    assert first.action == "ALLOW" and again.rule_ids == ("webhook.stripe.replay",)
