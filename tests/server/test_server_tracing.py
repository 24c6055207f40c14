"""Check spans and their per-phase children, exported to the SDK's in-memory exporter, through
a real in-process server on a real Unix socket: gRPC checks, and Envoy's HTTP-mode checks on
the HTTP socket."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from _server_support import check_request, check_stub, stripe_event, stripe_headers
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from extauthz._http import HttpIn, HttpOut
from extauthz.server.app import build_state
from extauthz.server.config import ServerConfig
from extauthz.server.http_api import HttpApi
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


# --- Envoy's HTTP mode: /ext_authz/... on the HTTP socket --------------------------------------


def _http(path: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession("http://pdp", connector=aiohttp.UnixConnector(path=path))


async def _start_http(start_inproc: Any, short_tmp: Any, factory: Any = None) -> tuple[Any, str]:
    http_socket = str(short_tmp / "http.sock")
    server = await start_inproc(
        state_factory=factory, unix_socket=None, http_unix_socket=http_socket
    )
    return server, http_socket


async def test_an_http_mode_check_has_the_grpc_check_s_span(
    start_inproc, short_tmp, traced, exporter
) -> None:  # type: ignore[no-untyped-def]
    _, sock = await _start_http(start_inproc, short_tmp, traced)
    headers = {
        "content-type": "application/json",
        "x-jwt-payload": base64.urlsafe_b64encode(json.dumps(CLAIMS).encode()).decode(),
        "x-request-id": "rid-traced",
        "traceparent": SAMPLED,  # what Envoy's ext_authz client sets for its own span
    }
    body = json.dumps({**GOOD, "tenantId": "globex"})
    async with (
        _http(sock) as http,
        http.post("/ext_authz/api/v1/licenses/activate", data=body, headers=headers) as resp,
    ):
        assert resp.status == 403
    spans = _by_name(exporter)
    check = spans.pop("ext_authz.check")
    assert format(check.context.trace_id, "032x") == TRACE_ID
    assert check.parent is not None and format(check.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert check.kind.name == "SERVER"
    assert dict(check.attributes) == {
        "contractshield.transport": "http_authz",
        "contractshield.decision_id": "rid-traced",
        "contractshield.route": "license-activate",
        "contractshield.action": "BLOCK",
        "contractshield.status_code": 403,
        "contractshield.policy_version": check.attributes["contractshield.policy_version"],
        "contractshield.hit_ids": ("tenant.binding",),
    }
    assert check.attributes["contractshield.policy_version"].startswith("sha256:")
    assert {"contractshield.route", "contractshield.cel"} <= set(spans)
    for name, span in spans.items():
        assert span.parent is not None and span.parent.span_id == check.context.span_id, name


async def test_an_http_mode_webhook_claim_is_inside_the_check_span(
    start_inproc, short_tmp, traced, exporter
) -> None:  # type: ignore[no-untyped-def]
    _, sock = await _start_http(start_inproc, short_tmp, traced)
    payload = stripe_event("evt_traced_http_1")
    headers = {**stripe_headers(payload), "traceparent": SAMPLED}
    async with (
        _http(sock) as http,
        http.post("/ext_authz/webhooks/stripe", data=payload, headers=headers) as resp,
    ):
        assert resp.status == 200
    spans = _by_name(exporter)
    check = spans["ext_authz.check"]
    assert check.attributes["contractshield.action"] == "ALLOW"
    replay = spans["contractshield.replay"]  # the awaited claim, still under the check span
    assert replay.parent is not None and replay.parent.span_id == check.context.span_id
    assert replay.end_time <= check.end_time


async def test_an_unsampled_http_mode_check_exports_nothing(
    start_inproc, short_tmp, traced, exporter
) -> None:  # type: ignore[no-untyped-def]
    _, sock = await _start_http(start_inproc, short_tmp, traced)
    async with _http(sock) as http:
        async with http.get("/ext_authz/admin/users", headers={"traceparent": UNSAMPLED}) as r:
            assert r.status == 403
        assert exporter.get_finished_spans() == ()
        async with http.get("/ext_authz/admin/users") as r:  # no context: a new root span
            assert r.status == 403
    (check,) = [s for s in exporter.get_finished_spans() if s.name == "ext_authz.check"]
    assert check.parent is None  # sampled (parent-based, always on), with its phase spans


async def test_tracing_off_an_http_mode_check_is_the_plain_call(start_inproc, short_tmp) -> None:  # type: ignore[no-untyped-def]
    """No tracer: no span wrapper and no coroutine for a check that needs no replay claim."""
    server, _ = await _start_http(start_inproc, short_tmp)
    assert server.state.tracer is None
    api = HttpApi(server.state, server.servicer)
    answer = api(HttpIn("GET", "/ext_authz/admin/users", "", {}, b""))
    assert isinstance(answer, HttpOut) and answer.status == 403
    assert api._authz == api.authz  # the plain bound call, not ``traced``
