"""Through a real Envoy to the real PDP on a real Unix socket, with a real upstream."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

JWT_SECRET = b"contractshield-demo-jwt-key"
STRIPE_SECRET = b"whsec_demo_contractshield"
ACTIVATE = "/api/v1/licenses/activate"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub: str = "alice", tenant: str = "acme", secret: bytes = JWT_SECRET) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": "contractshield-demo"}
    now = int(time.time())
    claims = {"sub": sub, "tenant": tenant, "scope": "licenses:write", "iat": now, "exp": now + 600}
    signing = ".".join(_b64url(json.dumps(p).encode()) for p in (header, claims))
    return f"{signing}.{_b64url(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(base: str, method: str, path: str, body: bytes | None = None, **headers: str) -> Reply:
    req = urllib.request.Request(base + path, data=body, method=method)
    for key, value in headers.items():
        req.add_header(key.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


def activate(base: str, body: dict[str, Any] | bytes, **headers: str) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return call(base, "POST", ACTIVATE, raw, content_type="application/json", **headers)


GOOD = {
    "licenseKey": "ABCD-1234-EFGH-5678",
    "deviceId": "dev-1",
    "tenantId": "acme",
    "callbackUrl": "https://ok.example/cb",
}


def denial(reply: Reply, status: int, rule: str) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["code"] == "POLICY_VIOLATION" and rule in body["ruleHits"], body
    assert body["requestId"] and body["error"]
    return body


def test_clean_request_reaches_upstream_with_decision_headers(stack) -> None:  # type: ignore[no-untyped-def]
    reply = activate(
        stack.url, GOOD, authorization=f"Bearer {token()}", x_contractshield_tenant="evil-corp"
    )
    assert reply.status == 200, reply.body
    seen = reply.json()  # the upstream's echo of what Envoy forwarded
    assert seen["path"] == ACTIVATE and seen["method"] == "POST"
    h = seen["headers"]
    assert h["x-contractshield-decision"] == "ALLOW"
    assert h["x-contractshield-route"] == "license-activate"
    assert h["x-contractshield-subject"] == "alice"
    assert h["x-contractshield-tenant"] == "acme"  # the client's copy was replaced


def test_spoofed_identity_headers_are_removed_for_anonymous_calls(stack) -> None:  # type: ignore[no-untyped-def]
    reply = call(
        stack.url,
        "GET",
        "/healthz",
        x_contractshield_tenant="evil",
        x_contractshield_subject="root",
    )
    assert reply.status == 200
    h = reply.json()["headers"]
    assert "x-contractshield-tenant" not in h and "x-contractshield-subject" not in h
    assert h["x-contractshield-decision"] == "ALLOW"


def test_ssrf_body_is_blocked(stack) -> None:  # type: ignore[no-untyped-def]
    body = {**GOOD, "callbackUrl": "http://169.254.169.254/latest/meta-data/"}
    denial(
        activate(stack.url, body, authorization=f"Bearer {token()}"),
        403,
        "vulnerability.ssrfInternal",
    )


def test_tenant_mismatch_is_blocked(stack) -> None:  # type: ignore[no-untyped-def]
    reply = activate(stack.url, {**GOOD, "tenantId": "globex"}, authorization=f"Bearer {token()}")
    denial(reply, 403, "tenant.binding")


def test_unauthenticated_call_is_blocked_by_policy(stack) -> None:  # type: ignore[no-untyped-def]
    denial(activate(stack.url, GOOD), 403, "auth.required")


def test_bad_token_is_envoys_401(stack) -> None:  # type: ignore[no-untyped-def]
    reply = activate(stack.url, GOOD, authorization=f"Bearer {token(secret=b'forged')}")
    assert reply.status == 401


def test_malformed_json_is_400(stack) -> None:  # type: ignore[no-untyped-def]
    reply = activate(
        stack.url, b'{"licenseKey": "ABCD-1234-EFGH-5678",', authorization=f"Bearer {token()}"
    )
    denial(reply, 400, "request.body.malformed")


def test_body_over_envoys_buffer_is_sent_partial_and_refused_413(stack) -> None:  # type: ignore[no-untyped-def]
    big = json.dumps({**GOOD, "deviceId": "d" * (2 * 1024 * 1024)}).encode()
    reply = activate(stack.url, big, authorization=f"Bearer {token()}")
    denial(reply, 413, "limit.body.max")


def stripe(payload: bytes, secret: bytes = STRIPE_SECRET) -> dict[str, str]:
    ts = int(time.time())
    sig = hmac.new(secret, f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return {"stripe_signature": f"t={ts},v1={sig}", "content_type": "application/json"}


def test_signed_stripe_webhook_passes_and_its_replay_is_blocked(stack) -> None:  # type: ignore[no-untyped-def]
    # Exact bytes matter: odd spacing and a trailing newline must survive Envoy untouched.
    payload = (
        json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "invoice.paid"}, indent=1).encode()
        + b"\n"
    )
    headers = stripe(payload)
    first = call(stack.url, "POST", "/webhooks/stripe", payload, **headers)
    assert first.status == 200, first.body
    assert first.json()["headers"]["x-contractshield-route"] == "stripe-webhook"
    assert first.json()["bodyBytes"] == len(payload)
    replay = call(stack.url, "POST", "/webhooks/stripe", payload, **headers)
    assert replay.status != 200
    assert "webhook.stripe.replay" in replay.json()["ruleHits"]


def test_bad_stripe_signature_is_blocked(stack) -> None:  # type: ignore[no-untyped-def]
    payload = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "invoice.paid"}).encode()
    reply = call(
        stack.url, "POST", "/webhooks/stripe", payload, **stripe(payload, secret=b"whsec_wrong")
    )
    assert reply.status in (401, 403)
    assert "webhook.stripe.signature" in reply.json()["ruleHits"]


def test_decision_id_in_the_denial_is_envoys_request_id(stack) -> None:  # type: ignore[no-untyped-def]
    """The dynamic-metadata half (Envoy's access log) is in test_envoy_modes_e2e.py."""
    reply = call(stack.url, "GET", "/admin/users", x_request_id="trace-me-123")
    body = denial(reply, 403, "admin.denied")
    assert body["requestId"] == "trace-me-123"  # Envoy's request id is our decision id


def test_tcp_variant(tcp_stack) -> None:  # type: ignore[no-untyped-def]
    ok = activate(tcp_stack.url, GOOD, authorization=f"Bearer {token()}")
    assert ok.status == 200 and ok.json()["headers"]["x-contractshield-decision"] == "ALLOW"
    denial(call(tcp_stack.url, "GET", "/admin/x"), 403, "admin.denied")


def _forged_payload(sub: str = "root", tenant: str = "acme") -> str:
    claims = {"sub": sub, "tenant": tenant, "scope": "licenses:write"}
    return _b64url(json.dumps(claims).encode())


def test_forged_identity_header_without_a_token_stays_anonymous(stack) -> None:  # type: ignore[no-untyped-def]
    """HTTP mode trusts x-jwt-payload: the shipped config drops a client's copy before
    jwt_authn, so a forged payload without a token is an anonymous call (gRPC mode never
    reads the header at all: the same outcome)."""
    reply = activate(stack.url, GOOD, x_jwt_payload=_forged_payload())
    denial(reply, 403, "auth.required")


def test_forged_identity_header_beside_a_real_token_is_replaced(stack) -> None:  # type: ignore[no-untyped-def]
    reply = activate(
        stack.url,
        GOOD,
        authorization=f"Bearer {token(sub='alice')}",
        x_jwt_payload=_forged_payload(sub="root"),
        x_contractshield_client_address="10.9.9.9",
        x_contractshield_content_length="1",
    )
    assert reply.status == 200, reply.body
    headers = reply.json()["headers"]
    assert headers["x-contractshield-subject"] == "alice"  # the verified token, not the forgery


def test_server_stopped_envoy_fails_closed_with_503(stack) -> None:  # type: ignore[no-untyped-def]
    """Last in this module: it stops the server for good."""
    assert call(stack.url, "GET", "/healthz").status == 200
    assert stack.server.stop() == 0
    reply = call(stack.url, "GET", "/healthz")
    assert reply.status == 503
    assert (
        call(stack.url, "POST", "/webhooks/stripe", b"{}", content_type="application/json").status
        == 503
    )
