"""The pipeline's record (what ``explain`` reads): filled only when asked, never changing a
decision, and holding each hit's phase."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings

from extauthz.context import RequestContext
from extauthz.engine import InMemoryReplayStore, evaluate
from extauthz.engine.explain import explain
from extauthz.engine.model import CompiledPolicy
from extauthz.engine.pipeline import PLAIN, timed
from extauthz.engine.record import Record, record, recording
from extauthz.policy import load_policy_text
from extauthz.webhooks import sign
from tests.engine.conftest import build_ctx
from tests.engine.test_engine_robustness import contexts

NOW = 1_700_000_000


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contexts())
def test_recording_decides_as_the_plain_path(demo: CompiledPolicy, ctx: RequestContext) -> None:
    """The recording seam never changes a decision; its record covers every hit, and explain
    from it says what explain says when it records for itself."""
    rec = Record()
    recorded = evaluate(
        demo, ctx, now=NOW, replay_store=InMemoryReplayStore(), phases=recording(rec)
    )
    plain = evaluate(demo, ctx, now=NOW, replay_store=InMemoryReplayStore())
    assert recorded == plain
    assert rec.complete and len(rec.hit_phases()) == len(plain.rule_hits)
    assert rec.ran[0] == "route" and "limits" in rec.ran
    ours = explain(demo, ctx, recorded, rec).to_dict()
    assert ours == explain(demo, ctx, plain, now=NOW).to_dict()
    json.dumps(ours, default=str)


def test_the_plain_phases_record_nothing() -> None:
    assert PLAIN.on_prepared is None
    assert timed(lambda name, start, end: None).on_prepared is None


HOOK = """
policyVersion: '0.1'
defaults: {mode: enforce}
routes:
  - id: hook
    match: {method: POST, path: "/hook/{tenant}"}
    limits: {maxArrayLength: 1}
    vulnerability: {commandInjection: true}
    contract:
      requestSchema: {type: object, properties: {n: {type: integer}}}
    webhook: {provider: stripe, secret: whsec_x, timestampTolerance: 300}
    rules:
      - {id: small.amount, type: cel, config: {expr: "request.body.n < 10"}}
"""


def test_each_hit_is_recorded_with_the_phase_that_reported_it() -> None:
    policy = load_policy_text(HOOK, source="hook.yaml")
    body = {"n": "x; rm -rf /tmp", "list": [1, 2]}
    raw = json.dumps(body).encode()
    headers = sign("stripe", "whsec_x", raw, timestamp=NOW)
    ctx = build_ctx("POST", "/hook/acme%2F", raw=raw, content_type="application/json",
                    headers=headers)  # fmt: skip
    rec = Record()
    decision = evaluate(policy, ctx, now=NOW, phases=recording(rec))
    assert rec.route is not None and rec.route.id == "hook"
    assert (rec.canonical_path, rec.params) == ("/hook/acme", {"tenant": "acme"})
    assert rec.signature_valid and rec.cel_view is not None
    assert rec.ran == ["route", "vulnerability", "limits", "contract", "webhook", "replay", "cel"]
    phases = dict(zip(decision.rule_ids, rec.hit_phases(), strict=True))
    assert phases == {
        "request.path.ambiguous": "route",
        "vulnerability.commandInjection": "vulnerability",
        "limit.array.max": "limits",
        "contract.schema.invalid": "contract",
        "small.amount": "cel",
    }


def test_the_replay_claims_hit_is_recorded_in_the_replay_phase() -> None:
    policy = load_policy_text(HOOK, source="hook.yaml")
    raw = b'{"id": "evt_1", "n": 1}'
    ctx = build_ctx("POST", "/hook/acme", raw=raw, content_type="application/json",
                    headers=sign("stripe", "whsec_x", raw, timestamp=NOW))  # fmt: skip
    store = InMemoryReplayStore()
    assert evaluate(policy, ctx, now=NOW, replay_store=store).action == "ALLOW"
    rec = Record()
    again = evaluate(policy, ctx, now=NOW, replay_store=store, phases=recording(rec))
    assert again.rule_ids == ("webhook.stripe.replay",)
    assert rec.hit_phases() == ["replay"]
    assert [h.phase for h in explain(policy, ctx, again, rec).hits] == ["replay"]


def test_an_engine_failure_leaves_an_incomplete_record_and_explain_still_answers() -> None:
    policy = load_policy_text(HOOK, source="hook.yaml")
    ctx = build_ctx("POST", "/hook/acme", body={"n": 1})
    rec = record(policy, RequestContext(request=None, id="broken"), now=NOW)  # type: ignore[arg-type]
    assert not rec.complete and rec.hit_phases() == []
    decision = evaluate(policy, ctx, now=NOW)
    out = explain(policy, ctx, decision, rec)
    assert not any(p.ran for p in out.phases) and "not recorded" in out.phases[0].detail
