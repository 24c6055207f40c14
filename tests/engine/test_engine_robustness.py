"""Property: ``evaluate`` returns a well-formed decision for any context, never raises."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extauthz.context import Body, BodyJson, HttpRequest, Identity, RequestContext
from extauthz.engine import InMemoryReplayStore, evaluate
from extauthz.engine.pipeline import timed

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)
paths = st.one_of(
    st.sampled_from(
        [
            "/api/v1/licenses/activate",
            "/api/v1/licenses/L-1",
            "/webhooks/stripe",
            "/webhooks/github",
            "/admin/x",
            "/healthz",
        ]
    ),
    st.text(alphabet="/%.2FfC0Aa5\\\x00é?#", max_size=40),
)
content_types = st.sampled_from(
    [None, "application/json", "application/x-www-form-urlencoded", "text/plain", "x/y+json"]
)


@st.composite
def contexts(draw: st.DrawFn) -> RequestContext:
    raw_kind = draw(st.sampled_from(["none", "bytes", "json", "sample"]))
    raw: bytes | None = None
    sample = None
    if raw_kind == "bytes":
        raw = draw(st.binary(max_size=300))
    elif raw_kind == "json":
        raw = json.dumps(draw(json_values)).encode()
    body = Body(
        present=raw_kind != "none",
        size_bytes=draw(st.integers(0, 3_000_000)) if draw(st.booleans()) else len(raw or b""),
        raw=raw,
        json=BodyJson(draw(json_values)) if raw_kind == "sample" else sample,
        partial=draw(st.booleans()),
    )
    headers = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "stripe-signature",
                    "x-hub-signature-256",
                    "content-length",
                    "x-github-event",
                    "host",
                    "x-slack-signature",
                    "x-slack-request-timestamp",
                ]
            ),
            st.text(max_size=60),
            max_size=4,
        )
    )
    return RequestContext(
        request=HttpRequest(
            method=draw(st.sampled_from(["GET", "POST", "DELETE", "get", "WEIRD"])),
            path=draw(paths),
            headers=headers,
            query=draw(st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=3)),
            content_type=draw(content_types),
            body=body,
        ),
        identity=Identity(
            authenticated=draw(st.booleans()),
            tenant=draw(st.none() | st.text(max_size=8)),
            claims=draw(st.dictionaries(st.text(max_size=5), json_values, max_size=3)),
        ),
        id="prop",
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contexts())
def test_traced_phases_decide_as_the_plain_ones(demo, ctx: RequestContext) -> None:
    """The tracing seam never changes a decision (the catalogue rows check the same)."""
    phases: list[str] = []
    traced = evaluate(
        demo, ctx, now=1_700_000_000, phases=timed(lambda name, start, end: phases.append(name))
    )
    assert traced == evaluate(demo, ctx, now=1_700_000_000)
    assert phases[:2] == ["route", "body"]  # every check matches a route and parses its body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contexts())
def test_evaluate_is_total(demo, ctx: RequestContext) -> None:
    d = evaluate(demo, ctx, replay_store=InMemoryReplayStore(), now=1_700_000_000)
    assert d.action in ("ALLOW", "BLOCK", "MONITOR")
    assert "engine.internalError" not in d.rule_ids, d.reason
    assert (d.action == "ALLOW") == (not d.rule_hits)
    assert 200 <= d.status_code < 600
    json.loads(d.to_json())
