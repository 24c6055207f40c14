"""Check spans and their per-phase children, exported to the SDK's in-memory exporter, through
a real in-process gRPC server on a real Unix socket."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from _server_support import check_request, check_stub, stripe_event, stripe_headers
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from extauthz.server.app import build_state
from extauthz.server.config import ServerConfig
from extauthz.server.state import ServerState
from extauthz.server.tracing import CheckTracer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SAMPLED = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
UNSAMPLED = f"00-{TRACE_ID}-00f067aa0ba902b7-00"
GOOD = {"licenseKey": "ABCD-1234-EFGH-5678", "deviceId": "device-42", "tenantId": "acme"}
CLAIMS = {"sub": "alice", "tenant": "acme", "scope": "licenses:write"}


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(exporter: InMemorySpanExporter) -> Callable[[ServerConfig], ServerState]:
    def factory(config: ServerConfig) -> ServerState:
        state = build_state(config)
        provider = TracerProvider()  # default sampler: parent-based, always on
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        state.tracer = CheckTracer(provider)
        return state

    return factory


async def _call(channel: Any, req: Any, traceparent: str) -> Any:
    return await check_stub(channel)(req, metadata=(("traceparent", traceparent),), timeout=5)


def _by_name(exporter: InMemorySpanExporter) -> dict[str, Any]:
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert len(names) == len(set(names)), names  # one span per phase, one check span
    return {s.name: s for s in spans}


async def test_a_sampled_check_has_a_child_span_per_phase(
    start_inproc, grpc_channel, traced, exporter
) -> None:  # type: ignore[no-untyped-def]
    await start_inproc(state_factory=traced)
    body = json.dumps({**GOOD, "tenantId": "globex"}).encode()
    req = check_request(
        "POST",
        "/api/v1/licenses/activate",
        headers={"content-type": "application/json"},
        body=body,
        claims=CLAIMS,
    )
    resp = await _call(grpc_channel, req, SAMPLED)
    assert resp.denied_response.status.code == 403  # tenant.binding, a CEL rule
    spans = _by_name(exporter)
    check = spans.pop("ext_authz.check")
    assert format(check.context.trace_id, "032x") == TRACE_ID
    assert check.attributes["contractshield.hit_ids"] == ("tenant.binding",)
    assert set(spans) == {
        f"contractshield.{p}"
        for p in ("route", "body", "vulnerability", "limits", "contract", "cel")
    }
    for name, span in spans.items():
        assert span.parent is not None and span.parent.span_id == check.context.span_id, name
        assert span.context.trace_id == check.context.trace_id
        assert span.attributes["contractshield.phase"] == name.removeprefix("contractshield.")
        assert check.start_time <= span.start_time <= span.end_time <= check.end_time, name
    order = sorted(spans.values(), key=lambda s: s.start_time)
    assert [s.name.removeprefix("contractshield.") for s in order] == [
        "route", "body", "vulnerability", "limits", "contract", "cel"
    ]  # fmt: skip
    for before, after in itertools.pairwise(order):
        assert before.end_time <= after.start_time  # phases run one after another


async def test_a_webhook_delivery_has_webhook_and_replay_spans(
    start_inproc, grpc_channel, traced, exporter
) -> None:  # type: ignore[no-untyped-def]
    await start_inproc(state_factory=traced)
    payload = stripe_event("evt_traced_1")
    req = check_request("POST", "/webhooks/stripe", headers=stripe_headers(payload), body=payload)
    first = await _call(grpc_channel, req, SAMPLED)
    assert first.status.code == 0
    names = set(_by_name(exporter))
    assert {"contractshield.webhook", "contractshield.replay"} <= names, names
    exporter.clear()
    again = await _call(grpc_channel, req, SAMPLED)  # the replay is refused, and traced too
    hits = json.loads(again.denied_response.body)["ruleHits"]
    assert again.status.code != 0 and any(h.endswith("replay") for h in hits), hits
    assert "contractshield.replay" in _by_name(exporter)


async def test_an_unsampled_check_exports_nothing_and_decides_the_same(
    start_inproc, grpc_channel, traced, exporter
) -> None:  # type: ignore[no-untyped-def]
    await start_inproc(state_factory=traced)
    req = check_request("GET", "/admin/users")
    unsampled = await _call(grpc_channel, req, UNSAMPLED)
    assert exporter.get_finished_spans() == ()
    sampled = await _call(grpc_channel, req, SAMPLED)
    assert len(exporter.get_finished_spans()) > 1
    assert unsampled.denied_response.status.code == sampled.denied_response.status.code == 403
    assert (
        json.loads(unsampled.denied_response.body)["ruleHits"]
        == json.loads(sampled.denied_response.body)["ruleHits"]
    )
