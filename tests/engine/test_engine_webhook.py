"""Webhook signatures for Stripe, GitHub, Slack and Twilio; tolerance, event types, bodies."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlencode

import pytest

from extauthz.context import RequestContext
from extauthz.engine import InMemoryReplayStore, evaluate
from extauthz.policy import load_policy_text
from extauthz.webhooks import sign

NOW = 1_767_225_600
POLICY = """
policyVersion: "0.1"
defaults: {mode: enforce, unmatchedRouteAction: block}
routes:
  - id: stripe
    match: {method: POST, path: /hooks/stripe}
    webhook:
      provider: stripe
      secret: whsec_test
      timestampTolerance: 300
      allowedEventTypes: [invoice.paid, customer.created]
  - id: github
    match: {method: POST, path: /hooks/github}
    webhook: {provider: github, secret: gh_secret, allowedEventTypes: [push]}
  - id: slack
    match: {method: POST, path: /hooks/slack}
    webhook: {provider: slack, secret: slack_secret, timestampTolerance: 60}
  - id: twilio
    match: {method: POST, path: /hooks/twilio}
    webhook: {provider: twilio, secret: twilio_token}
  - id: lenient
    match: {method: POST, path: /hooks/lenient}
    webhook: {provider: github, secret: gh_secret, requireRawBody: false, replayProtection: false}
"""


@pytest.fixture(scope="module")
def policy():
    return load_policy_text(POLICY)


def run(policy, c: RequestContext, store=None, now: float = NOW):
    store = store if store is not None else InMemoryReplayStore()
    return evaluate(policy, c, replay_store=store, now=now)


STRIPE_BODY = json.dumps({"id": "evt_1", "type": "invoice.paid"})


def stripe_ctx(ctx, body: str = STRIPE_BODY, *, secret="whsec_test", ts=NOW, **kw):
    headers = sign("stripe", secret, body.encode(), timestamp=ts)
    return ctx(
        "POST", "/hooks/stripe", raw=body, content_type="application/json", headers=headers, **kw
    )


def test_stripe_valid(policy, ctx: Callable[..., RequestContext]) -> None:
    d = run(policy, stripe_ctx(ctx))
    assert d.action == "ALLOW", d


def test_stripe_multiple_v1_signatures_any_may_match(policy, ctx) -> None:
    c = stripe_ctx(ctx)
    header = c.request.headers["stripe-signature"]
    t, v1 = header.split(",")
    rotated = f"{t},v1={'0' * 64},{v1},v0=abc"
    c2 = ctx(
        "POST",
        "/hooks/stripe",
        raw=STRIPE_BODY,
        content_type="application/json",
        headers={"stripe-signature": rotated},
    )
    assert run(policy, c2).action == "ALLOW"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda c, ctx: stripe_ctx(ctx, secret="whsec_wrong"), "does not match"),
        (lambda c, ctx: stripe_ctx(ctx, ts=NOW - 301), "tolerance"),
        (lambda c, ctx: stripe_ctx(ctx, ts=NOW + 301), "tolerance"),
        (
            lambda c, ctx: ctx(
                "POST",
                "/hooks/stripe",
                raw=STRIPE_BODY + " ",
                content_type="application/json",
                headers=dict(c.request.headers),
            ),
            "does not match",
        ),
        (
            lambda c, ctx: ctx(
                "POST", "/hooks/stripe", raw=STRIPE_BODY, content_type="application/json"
            ),
            "missing stripe-signature",
        ),
        (
            lambda c, ctx: ctx(
                "POST",
                "/hooks/stripe",
                raw=STRIPE_BODY,
                content_type="application/json",
                headers={"stripe-signature": "t=abc,v1=00"},
            ),
            "timestamp",
        ),
        (
            lambda c, ctx: ctx(
                "POST",
                "/hooks/stripe",
                raw=STRIPE_BODY,
                content_type="application/json",
                headers={"stripe-signature": f"t={NOW}"},
            ),
            "no v1",
        ),
    ],
)
def test_stripe_refusals(policy, ctx, mutate, reason: str) -> None:
    d = run(policy, mutate(stripe_ctx(ctx), ctx))
    assert d.rule_ids == ("webhook.stripe.signature",)
    assert reason in d.rule_hits[0].message
    assert d.status_code == 403 and d.risk.level == "critical"


def test_stripe_event_type_allow_list(policy, ctx) -> None:
    body = json.dumps({"id": "evt_2", "type": "charge.refunded"})
    d = run(policy, stripe_ctx(ctx, body))
    assert d.rule_ids == ("webhook.stripe.eventType",)
    # The event type is not read from an unverified body.
    d = run(policy, stripe_ctx(ctx, body, secret="nope"))
    assert d.rule_ids == ("webhook.stripe.signature",)


def test_partial_body_is_a_signature_hit_with_a_clear_reason(policy, ctx) -> None:
    c = stripe_ctx(ctx, partial=True, size_bytes=50_000)
    d = run(policy, c)
    assert "webhook.stripe.signature" in d.rule_ids
    assert "partial" in d.rule_hits[0].message


def test_raw_body_required(policy, ctx) -> None:
    body = {"ref": "main"}
    headers = sign(
        "github", "gh_secret", json.dumps(body, separators=(",", ":")).encode(), timestamp=0
    )
    headers["x-github-event"] = "push"
    c = ctx("POST", "/hooks/github", sample=body, content_type="application/json", headers=headers)
    d = run(policy, c)
    assert d.rule_ids == ("webhook.github.signature",)
    assert "raw body" in d.rule_hits[0].message
    # requireRawBody: false verifies over the compact JSON form of the sample
    c2 = ctx(
        "POST", "/hooks/lenient", sample=body, content_type="application/json", headers=headers
    )
    assert run(policy, c2).action == "ALLOW"


def gh_ctx(
    ctx,
    body: bytes = b'{"ref":"refs/heads/main"}',
    event: str = "push",
    delivery: str = "d-1",
    secret: str = "gh_secret",
):
    headers = sign("github", secret, body, timestamp=0)
    headers.update({"x-github-event": event, "x-github-delivery": delivery})
    return ctx("POST", "/hooks/github", raw=body, content_type="application/json", headers=headers)


def test_github(policy, ctx) -> None:
    assert run(policy, gh_ctx(ctx)).action == "ALLOW"
    assert run(policy, gh_ctx(ctx, secret="x")).rule_ids == ("webhook.github.signature",)
    assert run(policy, gh_ctx(ctx, event="issues")).rule_ids == ("webhook.github.eventType",)
    bad = ctx(
        "POST",
        "/hooks/github",
        raw=b"{}",
        content_type="application/json",
        headers={"x-hub-signature-256": "sha1=abc"},
    )
    d = run(policy, bad)
    assert d.rule_ids == ("webhook.github.signature",) and "sha256=" in d.rule_hits[0].message


def test_github_replay_keys_on_the_signed_body_not_the_delivery_id(policy, ctx) -> None:
    store = InMemoryReplayStore()
    assert run(policy, gh_ctx(ctx, delivery="a"), store).action == "ALLOW"
    d = run(policy, gh_ctx(ctx, delivery="a"), store)
    assert d.rule_ids == ("webhook.github.replay",) and d.action == "BLOCK"
    # x-github-delivery is not signed: a new id is the same event
    d = run(policy, gh_ctx(ctx, delivery="b"), store)
    assert d.rule_ids == ("webhook.github.replay",)
    other = gh_ctx(ctx, body=b'{"ref":"refs/heads/dev"}', delivery="b")
    assert run(policy, other, store).action == "ALLOW"


def slack_ctx(ctx, body: bytes, ts: int = NOW, secret: str = "slack_secret", ct="application/json"):
    headers = sign("slack", secret, body, timestamp=ts)
    return ctx("POST", "/hooks/slack", raw=body, content_type=ct, headers=headers)


def test_slack(policy, ctx) -> None:
    event = b'{"type":"event_callback","event_id":"Ev1","event":{"type":"message"}}'
    assert run(policy, slack_ctx(ctx, event)).action == "ALLOW"
    form = urlencode({"command": "/deploy", "text": "prod; now", "user_id": "U1"}).encode()
    assert run(policy, slack_ctx(ctx, form, ct="application/x-www-form-urlencoded")).allowed
    d = run(policy, slack_ctx(ctx, event, ts=NOW - 61))
    assert d.rule_ids == ("webhook.slack.signature",) and "tolerance" in d.rule_hits[0].message
    d = run(policy, slack_ctx(ctx, event, secret="other"))
    assert d.rule_ids == ("webhook.slack.signature",)
    c = slack_ctx(ctx, event)
    headers = dict(c.request.headers)
    del headers["x-slack-request-timestamp"]
    d = run(
        policy,
        ctx("POST", "/hooks/slack", raw=event, content_type="application/json", headers=headers),
    )
    assert "x-slack-request-timestamp" in d.rule_hits[0].message


def twilio_ctx(
    ctx,
    params: dict[str, str],
    secret: str = "twilio_token",
    url: str = "https://api.example.com/hooks/twilio",
):
    body = urlencode(params).encode()
    headers = sign("twilio", secret, body, timestamp=0, url=url, form_pairs=list(params.items()))
    headers.update({"host": "api.example.com", "x-forwarded-proto": "https"})
    return ctx(
        "POST",
        "/hooks/twilio",
        raw=body,
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )


def test_twilio(policy, ctx) -> None:
    params = {"MessageSid": "SM1", "From": "+15550001", "Body": "hello & bye", "To": "+1555"}
    assert run(policy, twilio_ctx(ctx, params)).action == "ALLOW"
    d = run(policy, twilio_ctx(ctx, params, secret="wrong"))
    assert d.rule_ids == ("webhook.twilio.signature",)
    # Twilio may sign the URL with the default port: accepted too.
    assert run(
        policy, twilio_ctx(ctx, params, url="https://api.example.com:443/hooks/twilio")
    ).allowed
    d = run(policy, twilio_ctx(ctx, params, url="https://evil.example.com/hooks/twilio"))
    assert d.rule_ids == ("webhook.twilio.signature",)


def test_sign_rejects_unknown_provider() -> None:
    with pytest.raises(ValueError, match="unknown webhook provider"):
        sign("paypal", "s", b"", timestamp=0)
    with pytest.raises(ValueError, match="URL"):
        sign("twilio", "s", b"", timestamp=0)
