"""WSGI middleware with a real Flask app: remote over a Unix socket and TCP against the REAL
server, and embedded (in-process engine with the hot reloader)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _middleware_support import wsgi_identity
from flask import Flask, jsonify, request

from extauthz import Decision
from extauthz.devstack.server import DEMO_POLICY
from extauthz.middleware import DenyResponse
from extauthz.middleware.wsgi import EmbeddedWSGIMiddleware, RemoteWSGIMiddleware

ACTIVATE = "/api/v1/licenses/activate"
ALICE = {"x-test-user": "alice@t-1"}


def activation(tenant: str = "t-1", **extra: Any) -> bytes:
    body = {"licenseKey": "ABCD-1234-EFGH-5678", "deviceId": "d-1", "tenantId": tenant, **extra}
    return json.dumps(body).encode()


def make_app(seen: list[dict[str, Any]]) -> Flask:
    app = Flask("contractshield-test")

    @app.route(ACTIVATE, methods=["POST"])
    @app.route("/api/v1/licenses/<lid>", methods=["GET"])
    @app.route("/healthz", methods=["GET"])
    @app.route("/admin/<path:rest>", methods=["GET"])
    def echo(**_: str) -> Any:
        body = request.get_data()
        decision: Decision = request.environ["contractshield.decision"]
        seen.append({"body": body, "decision": decision})
        return jsonify(action=decision.action, route=decision.metadata.route_id, size=len(body))

    return app


@pytest.fixture(params=["remote-unix", "remote-tcp", "embedded"])
def app_and_seen(
    request: pytest.FixtureRequest, pdp_targets: dict[str, str]
) -> Iterator[tuple[Flask, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    app = make_app(seen)
    if request.param == "embedded":
        mw: Any = EmbeddedWSGIMiddleware(
            app.wsgi_app, policy=DEMO_POLICY, hot_reload=False, identity=wsgi_identity
        )
    else:
        target = pdp_targets[request.param.removeprefix("remote-")]
        mw = RemoteWSGIMiddleware(
            app.wsgi_app, target=target, identity=wsgi_identity, timeout_ms=2000
        )
    app.wsgi_app = mw  # type: ignore[method-assign]
    try:
        yield app, seen
    finally:
        if isinstance(mw, EmbeddedWSGIMiddleware):
            mw.close()
        else:
            mw.client.close()


def test_clean_request_reaches_flask_with_the_decision(app_and_seen: Any) -> None:
    app, seen = app_and_seen
    client = app.test_client()
    raw = activation()
    resp = client.post(ACTIVATE, data=raw, headers={**ALICE, "content-type": "application/json"})
    assert resp.status_code == 200
    assert resp.get_json() == {"action": "ALLOW", "route": "license-activate", "size": len(raw)}
    assert seen[-1]["body"] == raw
    resp = client.get("/api/v1/licenses/L-1?expand=1", headers=ALICE)
    assert resp.get_json()["route"] == "license-get"


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "rule"),
    [
        (
            "POST",
            ACTIVATE,
            ALICE,
            activation(callbackUrl="http://10.0.0.1/"),
            403,
            "vulnerability.ssrfInternal",
        ),
        ("POST", ACTIVATE, ALICE, activation("t-2"), 403, "tenant.binding"),
        ("GET", "/api/v1/licenses/L-1", {}, None, 403, "auth.required"),
        ("GET", "/admin/users", ALICE, None, 403, "admin.denied"),
        ("POST", ACTIVATE, ALICE, b"{not json", 400, None),
    ],
)
def test_blocked_requests_never_reach_flask(
    app_and_seen: Any,
    method: str,
    path: str,
    headers: dict,
    body: Any,
    status: int,
    rule: str | None,
) -> None:
    app, seen = app_and_seen
    resp = app.test_client().open(
        path, method=method, data=body, headers={**headers, "content-type": "application/json"}
    )
    assert resp.status_code == status
    data = resp.get_json()
    assert data["code"] == "POLICY_VIOLATION" and data["error"]
    if rule:
        assert rule in data["ruleHits"]
    assert seen == []


def test_large_body_is_replayed_whole(pdp_targets: dict[str, str]) -> None:
    seen: list[dict[str, Any]] = []
    app = make_app(seen)
    app.wsgi_app = RemoteWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, target=pdp_targets["unix"], max_body_bytes=64, timeout_ms=2000
    )
    big = bytes(range(256)) * 40
    resp = app.test_client().open("/healthz", method="GET", data=big)
    assert resp.status_code == 200 and resp.get_json()["size"] == len(big)
    assert seen[-1]["body"] == big


def test_pdp_down_fails_closed_or_open(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    target = f"unix://{tmp_path}/nobody.sock"
    app = make_app(seen)
    app.wsgi_app = RemoteWSGIMiddleware(app.wsgi_app, target=target, timeout_ms=100, retries=0)  # type: ignore[method-assign]
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 503 and resp.get_json()["code"] == "PDP_UNAVAILABLE"
    app = make_app(seen)
    app.wsgi_app = RemoteWSGIMiddleware(app.wsgi_app, target=target, timeout_ms=100, fail_open=True)  # type: ignore[method-assign]
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 200 and seen[-1]["decision"].rule_ids == ("client.failOpen",)


def test_deny_response_is_overridable(pdp_targets: dict[str, str]) -> None:
    class Quiet(RemoteWSGIMiddleware):
        def deny_response(self, decision: Decision) -> DenyResponse:
            return DenyResponse(404, b"not found", (("content-type", "text/plain"),))

    app = make_app([])
    app.wsgi_app = Quiet(app.wsgi_app, target=pdp_targets["tcp"], timeout_ms=2000)  # type: ignore[method-assign]
    resp = app.test_client().get("/admin/x")
    assert (resp.status_code, resp.data) == (404, b"not found")


def test_embedded_hot_reload_applies_a_policy_edit(policy_copy: Path) -> None:
    app = make_app([])
    mw = EmbeddedWSGIMiddleware(app.wsgi_app, policy=policy_copy, identity=wsgi_identity)
    app.wsgi_app = mw  # type: ignore[method-assign]
    try:
        client = app.test_client()
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
