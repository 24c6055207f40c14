"""ASGI middleware with a real Starlette app (TestClient): remote over a Unix socket and TCP
against the REAL server, and embedded (in-process engine with the hot reloader)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _middleware_support import asgi_identity
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from extauthz import Decision, Identity
from extauthz.devstack.server import DEMO_POLICY
from extauthz.middleware import DenyResponse
from extauthz.middleware.asgi import EmbeddedASGIMiddleware, RemoteASGIMiddleware

ACTIVATE = "/api/v1/licenses/activate"
ALICE = {"x-test-user": "alice@t-1"}


def activation(tenant: str = "t-1", **extra: Any) -> dict[str, Any]:
    return {"licenseKey": "ABCD-1234-EFGH-5678", "deviceId": "d-1", "tenantId": tenant, **extra}


def make_app(seen: list[dict[str, Any]]) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        decision: Decision = request.state.contractshield_decision
        seen.append({"body": body, "decision": decision})
        return JSONResponse(
            {"action": decision.action, "route": decision.metadata.route_id, "size": len(body)}
        )

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    return Starlette(
        routes=[
            Route(ACTIVATE, echo, methods=["POST"]),
            Route("/api/v1/licenses/{lid}", echo, methods=["GET"]),
            Route("/healthz", echo, methods=["GET"]),
            Route("/webhooks/stripe", echo, methods=["POST"]),
            Route("/admin/{rest:path}", echo, methods=["GET"]),
            WebSocketRoute("/ws", ws),
        ]
    )


@pytest.fixture(params=["remote-unix", "remote-tcp", "embedded"])
def flavour(
    request: pytest.FixtureRequest, pdp_targets: dict[str, str]
) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    app = make_app(seen)
    if request.param == "embedded":
        mw: Any = EmbeddedASGIMiddleware(
            app, policy=DEMO_POLICY, hot_reload=False, identity=asgi_identity
        )
    else:
        target = pdp_targets[request.param.removeprefix("remote-")]
        mw = RemoteASGIMiddleware(app, target=target, identity=asgi_identity, timeout_ms=2000)
    try:
        yield mw, seen
    finally:
        if isinstance(mw, EmbeddedASGIMiddleware):
            mw.close()


def test_clean_request_reaches_the_app_with_the_decision(flavour: Any) -> None:
    mw, seen = flavour
    with TestClient(mw) as client:
        raw = json.dumps(activation()).encode()
        resp = client.post(
            ACTIVATE, content=raw, headers={**ALICE, "content-type": "application/json"}
        )
        assert resp.status_code == 200
        assert resp.json() == {"action": "ALLOW", "route": "license-activate", "size": len(raw)}
        assert seen[-1]["body"] == raw  # replayed unchanged
        assert seen[-1]["decision"].metadata.policy_version.startswith("sha256:")
        assert client.get("/api/v1/licenses/L-1", headers=ALICE).json()["route"] == "license-get"


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "rule"),
    [
        (
            "POST",
            ACTIVATE,
            ALICE,
            activation(callbackUrl="http://169.254.169.254/"),
            403,
            "vulnerability.ssrfInternal",
        ),
        ("POST", ACTIVATE, ALICE, activation("t-2"), 403, "tenant.binding"),
        ("POST", ACTIVATE, {}, activation(), 403, "auth.required"),
        ("GET", "/api/v1/licenses/L-1", {}, None, 403, "auth.required"),
        ("GET", "/admin/users", ALICE, None, 403, "admin.denied"),
        ("POST", ACTIVATE, ALICE, b'{"licenseKey": ', 400, None),
    ],
)
def test_blocked_requests_get_the_policy_violation_body(
    flavour: Any, method: str, path: str, headers: dict, body: Any, status: int, rule: str | None
) -> None:
    mw, seen = flavour
    content = body if isinstance(body, bytes) else (json.dumps(body).encode() if body else None)
    with TestClient(mw) as client:
        resp = client.request(
            method, path, content=content, headers={**headers, "content-type": "application/json"}
        )
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    data = resp.json()
    assert data["code"] == "POLICY_VIOLATION" and data["error"]
    if rule:
        assert rule in data["ruleHits"]
    assert seen == []  # the app never ran


def test_non_http_scopes_pass_straight_through(flavour: Any) -> None:
    mw, _ = flavour
    with TestClient(mw) as client, client.websocket_connect("/ws") as ws:  # lifespan + websocket
        assert ws.receive_text() == "hello"


def stripe_headers(payload: bytes) -> dict[str, str]:
    ts = int(time.time())
    mac = hmac.new(b"whsec_demo_contractshield", f"{ts}.".encode() + payload, hashlib.sha256)
    return {"stripe-signature": f"t={ts},v1={mac.hexdigest()}", "content-type": "application/json"}


def test_large_body_is_inspected_partially_and_replayed_whole(pdp_targets: dict[str, str]) -> None:
    seen: list[dict[str, Any]] = []
    mw = RemoteASGIMiddleware(
        make_app(seen), target=pdp_targets["unix"], max_body_bytes=64, timeout_ms=2000
    )
    big = b"x" * 5000
    chunks = [big[i : i + 1000] for i in range(0, 5000, 1000)]
    event = {"id": f"evt_mw_{time.time_ns()}", "type": "invoice.paid", "pad": "p" * 500}
    payload = json.dumps(event).encode()
    with TestClient(mw) as client:
        # Streamed in chunks with a content-length within the policy's limit: the first ones
        # are inspected and replayed, the rest comes straight through.
        resp = client.request(
            "GET", "/healthz", content=iter(chunks), headers={"content-length": "5000"}
        )  # health: no body checks
        assert resp.status_code == 200 and resp.json()["size"] == 5000
        assert seen[-1]["body"] == big
        # Chunked, no length declared: the real size is unknown and could exceed the policy's
        # maxBodyBytes, so the cut body is refused (issue 24) and never reaches the app.
        count = len(seen)
        resp = client.request("GET", "/healthz", content=iter(chunks))
        assert resp.status_code == 413 and "limit.body.max" in resp.json()["ruleHits"]
        assert len(seen) == count
        # The PDP saw only the first 64 bytes, flagged partial: a signature cannot hold.
        resp = client.post("/webhooks/stripe", content=payload, headers=stripe_headers(payload))
        assert resp.status_code == 400  # the 64-byte prefix is not JSON either
        assert "webhook.stripe.signature" in resp.json()["ruleHits"]
    whole = RemoteASGIMiddleware(make_app(seen), target=pdp_targets["unix"], timeout_ms=2000)
    with TestClient(whole) as client:
        resp = client.post("/webhooks/stripe", content=payload, headers=stripe_headers(payload))
        assert resp.status_code == 200 and seen[-1]["body"] == payload


def test_pdp_down_fails_closed_with_503_or_open_with_the_decision(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    target = f"unix://{tmp_path}/nobody.sock"
    closed = RemoteASGIMiddleware(make_app(seen), target=target, timeout_ms=100, retries=0)
    with TestClient(closed) as client:
        resp = client.get("/healthz")
    assert resp.status_code == 503 and resp.json()["code"] == "PDP_UNAVAILABLE"
    opened = RemoteASGIMiddleware(make_app(seen), target=target, timeout_ms=100, fail_open=True)
    with TestClient(opened) as client:
        resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.json()["action"] == "ALLOW"
    assert seen[-1]["decision"].rule_ids == ("client.failOpen",)


def test_an_identity_that_cannot_be_sent_is_a_400(pdp_targets: dict[str, str]) -> None:
    bad = Identity(authenticated=True, subject="a", claims={"groups": {"x"}})
    mw = RemoteASGIMiddleware(
        make_app([]), target=pdp_targets["unix"], identity=lambda scope: bad, fail_open=True
    )
    with TestClient(mw) as client:
        resp = client.get("/healthz")
    assert resp.status_code == 400 and resp.json()["code"] == "INVALID_REQUEST"


def test_deny_response_is_overridable(pdp_targets: dict[str, str]) -> None:
    class Teapot(RemoteASGIMiddleware):
        def deny_response(self, decision: Decision) -> DenyResponse:
            return DenyResponse(
                418,
                b"no",
                (("content-type", "text/plain"), ("x-rules", ",".join(decision.rule_ids))),
            )

    mw = Teapot(make_app([]), target=pdp_targets["tcp"], timeout_ms=2000)
    with TestClient(mw) as client:
        resp = client.get("/admin/x")
    assert (resp.status_code, resp.text, resp.headers["x-rules"]) == (418, "no", "admin.denied")


def test_embedded_hot_reload_applies_a_policy_edit(policy_copy: Path) -> None:
    mw = EmbeddedASGIMiddleware(make_app([]), policy=policy_copy, identity=asgi_identity)
    try:
        with TestClient(mw) as client:
            assert client.get("/admin/users", headers=ALICE).status_code == 403
            text = policy_copy.read_text()
            assert 'expr: "false"' in text
            policy_copy.write_text(text.replace('expr: "false"', 'expr: "true"'))
            deadline = time.monotonic() + 5
            while client.get("/admin/users", headers=ALICE).status_code != 200:
                assert time.monotonic() < deadline, "policy edit not applied within 5 s"
                time.sleep(0.1)
    finally:
        mw.close()
