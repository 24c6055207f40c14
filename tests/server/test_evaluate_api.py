"""``POST /evaluate``: upstream ContractShield's sidecar API on the server's policy."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

ADMIN = {"request": {"method": "GET", "path": "/admin/users"}}
ALLOW_ALL = {"policyVersion": "0.1", "routes": []}  # would allow everything: unmatched = allow


@pytest.fixture
async def http(start_inproc, free_port):  # type: ignore[no-untyped-def]
    server = await start_inproc(http_port=free_port())
    async with aiohttp.ClientSession(f"http://127.0.0.1:{server.http_port}") as session:
        yield session


async def post(http: aiohttp.ClientSession, body: Any) -> tuple[int, dict[str, Any]]:
    async with http.post("/evaluate", json=body) as resp:
        return resp.status, await resp.json()


async def test_context_in_decision_and_duration_out(http) -> None:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    status, out = await post(http, {"context": ADMIN})
    round_trip_ms = (time.perf_counter() - started) * 1000
    assert status == 200 and set(out) == {"decision", "durationMs"}
    decision = out["decision"]
    assert decision["action"] == "BLOCK" and decision["statusCode"] == 403
    assert [h["id"] for h in decision["ruleHits"]] == ["admin.denied"]
    assert decision["redactions"] == [] and decision["version"] == "0.1"
    # Milliseconds of the decision itself: inside the client's round trip (not a speed bound).
    assert isinstance(out["durationMs"], float) and 0 <= out["durationMs"] <= round_trip_ms


async def test_a_callers_policy_is_refused_by_default(http) -> None:  # type: ignore[no-untyped-def]
    status, out = await post(http, {"context": ADMIN, "policy": ALLOW_ALL})
    assert status == 400 and "ALLOW_REQUEST_POLICY" in out["error"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"ctx": {}}, 'expected {"context"'),
        ([1], 'expected {"context"'),
        ({"context": {"request": {"path": "/x"}}}, "context: request.method"),
        ({"context": ADMIN, "extra": 1}, "unknown key 'extra'"),
        ({"context": ADMIN, "options": {"failOpen": True}}, "options are not accepted"),
    ],
)
async def test_malformed_bodies_are_400(http, body: Any, reason: str) -> None:  # type: ignore[no-untyped-def]
    status, out = await post(http, body)
    assert status == 400 and reason in out["error"] and out["code"] == "INVALID_REQUEST"


async def test_a_callers_policy_when_the_operator_allows_it(
    start_inproc, free_port, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_server_secret")
    server = await start_inproc(http_port=free_port(), allow_request_policy=True)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{server.http_port}") as http:
        status, out = await post(http, {"context": ADMIN, "policy": ALLOW_ALL})
        assert status == 200 and out["decision"]["action"] == "ALLOW"
        # Sealed: no server files, no server environment (an oracle on either).
        leaky = {
            "policyVersion": "0.1",
            "routes": [
                {
                    "id": "a",
                    "match": {"path": "/a"},
                    "contract": {"requestSchemaRef": "/etc/passwd"},
                },
                {"id": "b", "match": {"path": "/b"}, "webhook": {"provider": "stripe"}},
            ],
        }
        status, out = await post(http, {"context": ADMIN, "policy": leaky})
        assert status == 400 and out["error"] == "the request's policy is invalid"
        assert any(
            "routes[0].contract.requestSchemaRef" in p and "cannot read" in p
            for p in out["problems"]
        )
        assert any("routes[1].webhook" in p and "environment" in p for p in out["problems"])


async def test_a_webhook_delivery_claims_once_on_both_json_doors(http) -> None:  # type: ignore[no-untyped-def]
    """The fast codec's path through ``Decider.begin``: a delivery whose replay claim is due is
    awaited (a ``Claim``), so the second delivery of an event is a replay on either door."""
    from _server_support import stripe_event, stripe_headers

    for door, event in (("/evaluate", "evt_fast_1"), ("/v1/evaluate", "evt_fast_2")):
        payload = stripe_event(event)
        context = {
            "request": {
                "method": "POST",
                "path": "/webhooks/stripe",
                "headers": stripe_headers(payload),
                "body": {"raw": payload.decode()},
            }
        }
        actions = []
        for _ in range(2):
            body = {"context": context} if door == "/evaluate" else context
            async with http.post(door, json=body) as resp:
                assert resp.status == 200
                out = await resp.json()
            decision = out["decision"] if door == "/evaluate" else out
            actions.append((decision["action"], [h["id"] for h in decision["ruleHits"]]))
        assert actions == [("ALLOW", []), ("BLOCK", ["webhook.stripe.replay"])], door
