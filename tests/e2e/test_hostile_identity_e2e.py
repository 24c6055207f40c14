"""Issue 24, classes 5, 7, 8 and 9 through a real Envoy in both authz modes (the shipped
``envoy/envoy.yaml`` and ``envoy/envoy-http.yaml``, which are what ``extauthz envoy-config``
renders), asserting what the upstream received, or that it received nothing.

5. a captured webhook replayed with what a replayer can change is refused;
7. a ``;`` in the path (path parameters) is refused, never matched as a template value;
8. header names with ``_`` are refused by Envoy; no client copy of an identity header
   (``x-jwt-*``, ``x-contractshield-*``) reaches the upstream or the PDP;
9. a lone surrogate is one ``request.malformed`` hit (400); a JWT claim nested past the limit
   is the same 400 in both modes, with no library text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from _e2e_support import Stack, run_stack
from test_envoy_e2e import Reply, call

from extauthz.demo.tokens import mint_jwt
from extauthz.envoy.request import CLAIMS_TOO_DEEP, MAX_CLAIMS_DEPTH

STRIPE_SECRET = b"whsec_e2e_hostile"
GITHUB_SECRET = b"gh_e2e_hostile"
POLICY = """\
policyVersion: "0.1"
name: e2e-hostile
defaults: {mode: enforce, unmatchedRouteAction: block}
routes:
  - id: users.get
    match: {method: GET, path: "/api/users/{id}"}
  - id: who
    match: {method: GET, path: /who}
  - id: notes
    match: {method: POST, path: /notes}
    rules:
      - {id: auth.required, type: cel, config: {expr: "identity.authenticated"}}
      - {id: notes.short, type: cel, config: {expr: "size(request.body.text) < 100"}}
      - {id: notes.tenant, type: cel, config: {expr: "identity.tenant == 'acme'"}}
  - id: stripe
    match: {method: POST, path: /hooks/stripe}
    webhook: {provider: stripe, secret: whsec_e2e_hostile}
  - id: github
    match: {method: POST, path: /hooks/github}
    webhook: {provider: github, secret: gh_e2e_hostile}
"""


@pytest.fixture(scope="module", params=["grpc", "http"], ids=["grpc-mode", "http-mode"])
def hostile(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    policy = tmp_path_factory.mktemp("policy") / "hostile.yaml"
    policy.write_text(POLICY)
    yield from run_stack(tcp=False, mode=request.param, policy=policy)


def raw(port: int, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b""):
    """One HTTP/1.1 exchange with the request bytes exactly as given: (status, body)."""
    lines = [f"{method} {path} HTTP/1.1", "host: api.example", "connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body:
        lines.append(f"content-length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest


def answer(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def bearer(**kw: Any) -> str:
    return f"Bearer {mint_jwt(**kw)}"


# -- 7. path parameters -------------------------------------------------------------------

SEMICOLON_PATHS = [
    "/api/users/;x=1",
    "/api/users/1;jsessionid=ABC",
    "/api/users/%3Bx=1",
    "/api/users/1%3bjsessionid=x",
    "/api/users;x=1/1",
    "/api/;/users/1",
    "/api/users/;",
    "/api/users/7;",
    "/api/users/%3B",
]


@pytest.mark.parametrize("path", SEMICOLON_PATHS)
def test_semicolon_paths_never_reach_the_upstream(hostile: Stack, path: str) -> None:
    before = hostile.upstream.count
    status, body = raw(hostile.envoy.listen_port, "GET", path, [])
    assert status in (400, 403), (status, body)
    assert hostile.upstream.count == before
    hits = answer(body).get("ruleHits")
    if hits is not None:  # the PDP answered (Envoy did not refuse the path itself)
        assert "request.path.ambiguous" in hits


@pytest.mark.parametrize(
    ("path", "resolved"),
    [
        ("/api/users/a;b/..;/7", "/api/users/7"),
        ("/who/..;x/who", "/who"),
        ("/api/users/7/..;/..;/..;/who", "/who"),
        ("/api/users/..;/7", None),  # /api/7: no route
    ],
)
def test_envoy_resolves_dot_dot_semicolon_for_everyone(
    hostile: Stack, path: str, resolved: str | None
) -> None:
    """Envoy's ``normalize_path`` reads ``..;x`` as ``..`` (as Tomcat does) before routing and
    ext_authz: the PDP decides on the path the upstream then gets, which holds no ';'."""
    before = hostile.upstream.count
    status, body = raw(hostile.envoy.listen_port, "GET", path, [])
    if resolved is None:
        assert status == 403 and answer(body)["ruleHits"] == ["route.unmatched"]
        assert hostile.upstream.count == before
        return
    assert status == 200, body
    assert json.loads(body)["path"] == resolved


def test_a_plain_id_still_reaches_the_upstream(hostile: Stack) -> None:
    status, body = raw(hostile.envoy.listen_port, "GET", "/api/users/7?x=a;b", [])
    assert status == 200, body
    seen = json.loads(body)
    assert seen["path"] == "/api/users/7" and seen["headers"]["x-contractshield-route"] == (
        "users.get"
    )


# -- 8. identity headers ------------------------------------------------------------------

FORGED_PAYLOAD = base64.urlsafe_b64encode(
    json.dumps({"sub": "root", "tenant": "acme", "scope": "admin"}).encode()
).decode()
CLIENT_COPIES = [
    ("x-jwt-payload", FORGED_PAYLOAD),
    ("x-jwt-sub", "root"),
    ("x-jwt-tenant", "evil"),
    ("x-jwt-scope", "admin"),
    ("x-contractshield-subject", "root"),
    ("x-contractshield-tenant", "evil"),
    ("x-contractshield-route", "evil"),
    ("x-contractshield-decision", "evil"),
    ("x-contractshield-decision-id", "evil"),
    ("x-contractshield-policy-version", "evil"),
    ("x-contractshield-client-address", "10.9.9.9"),
    ("x-contractshield-content-length", "1"),
    ("x-contractshield-anything", "evil"),
    ("X-JWT-Payload", FORGED_PAYLOAD),  # any case
]


@pytest.mark.parametrize(
    "name", ["x_contractshield_tenant", "x_contractshield_subject", "x_jwt_payload", "a_b"]
)
def test_a_header_name_with_an_underscore_is_refused_by_envoy(hostile: Stack, name: str) -> None:
    before = hostile.upstream.count
    status, _ = raw(hostile.envoy.listen_port, "GET", "/who", [(name, "evil")])
    assert status == 400
    assert hostile.upstream.count == before


def _forwarded(seen: dict[str, Any]) -> dict[str, str]:
    return {
        k: v for k, v in seen["headers"].items() if k.startswith(("x-jwt-", "x-contractshield"))
    }


def test_anonymous_client_copies_never_reach_the_upstream(hostile: Stack) -> None:
    status, body = raw(hostile.envoy.listen_port, "GET", "/who", CLIENT_COPIES)
    assert status == 200, body
    forwarded = _forwarded(json.loads(body))
    # only what the PDP wrote: the decision and the route, no identity, nothing of the client's
    assert forwarded["x-contractshield-decision"] == "ALLOW"
    assert forwarded["x-contractshield-route"] == "who"
    assert set(forwarded) <= {
        "x-contractshield-decision",
        "x-contractshield-route",
        "x-contractshield-decision-id",
        "x-contractshield-policy-version",
    }, forwarded
    assert not any(v in ("evil", "root", "10.9.9.9", FORGED_PAYLOAD) for v in forwarded.values())


def test_authenticated_client_copies_are_replaced_by_the_verified_token(hostile: Stack) -> None:
    headers = [("authorization", bearer(subject="alice")), *CLIENT_COPIES]
    status, body = raw(hostile.envoy.listen_port, "GET", "/who", headers)
    assert status == 200, body
    forwarded = _forwarded(json.loads(body))
    assert forwarded["x-contractshield-subject"] == "alice"
    assert forwarded["x-contractshield-tenant"] == "acme"
    assert not any(v in ("evil", "root", "10.9.9.9", FORGED_PAYLOAD) for v in forwarded.values())
    assert not any(k.startswith("x-jwt-") and k != "x-jwt-payload" for k in forwarded)
    if "x-jwt-payload" in forwarded:  # HTTP mode: jwt_authn's own, for the verified token
        assert hostile.mode == "http"
        payload = forwarded["x-jwt-payload"]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["sub"] == "alice"


def test_the_pdp_never_trusts_a_client_copy(hostile: Stack) -> None:
    """A forged payload or claim header without a token: an anonymous call in both modes."""
    before = hostile.upstream.count
    status, body = raw(
        hostile.envoy.listen_port,
        "POST",
        "/notes",
        [("content-type", "application/json"), *CLIENT_COPIES],
        b'{"text":"hi"}',
    )
    assert status == 403, body
    assert "auth.required" in answer(body)["ruleHits"]
    assert hostile.upstream.count == before


# -- 9. failures that mislead -------------------------------------------------------------


@pytest.mark.parametrize(
    "text", [b'"\\ud800"', b'"a\\udfffb"', b'"\\udc00\\ud800"', b'"ok \\ud83d"']
)
def test_a_lone_surrogate_is_one_malformed_hit(hostile: Stack, text: bytes) -> None:
    before = hostile.upstream.count
    status, body = raw(
        hostile.envoy.listen_port,
        "POST",
        "/notes",
        [("content-type", "application/json"), ("authorization", bearer())],
        b'{"text":' + text + b"}",
    )
    assert status == 400, body
    assert answer(body)["ruleHits"] == ["request.malformed"]  # not auth.required & co.
    assert hostile.upstream.count == before


def test_a_valid_surrogate_pair_is_fine(hostile: Stack) -> None:
    status, body = raw(
        hostile.envoy.listen_port,
        "POST",
        "/notes",
        [("content-type", "application/json"), ("authorization", bearer())],
        b'{"text":"\\ud83d\\ude00"}',
    )
    assert status == 200, body
    assert json.loads(body)["headers"]["x-contractshield-subject"] == "alice"


def _nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize("levels", [MAX_CLAIMS_DEPTH + 1, 20, 35, 60])
def test_a_jwt_claim_nested_too_deep_is_the_same_400_in_both_modes(
    hostile: Stack, levels: int
) -> None:
    # the claims object is level 1, "deep" holds ``levels - 1`` more
    token = mint_jwt(extra={"deep": _nested(levels - 1)})
    before = hostile.upstream.count
    reply = call(hostile.url, "GET", "/who", authorization=f"Bearer {token}")
    assert reply.status == 400, reply.body
    text = reply.body.decode()
    assert "upb" not in text and "Error parsing" not in text
    assert answer(reply.body)["ruleHits"] == ["request.invalid"]
    assert CLAIMS_TOO_DEEP in text
    assert hostile.upstream.count == before


def test_a_jwt_claim_at_the_limit_passes(hostile: Stack) -> None:
    token = mint_jwt(extra={"deep": _nested(MAX_CLAIMS_DEPTH - 2)})
    reply = call(hostile.url, "GET", "/who", authorization=f"Bearer {token}")
    assert reply.status == 200, reply.body
    assert reply.json()["headers"]["x-contractshield-subject"] == "alice"


# -- 5. replay keys -----------------------------------------------------------------------


def _stripe(payload: bytes) -> str:
    ts = int(time.time())
    sig = hmac.new(STRIPE_SECRET, f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={sig}"


def _post(stack: Stack, path: str, payload: bytes, headers: dict[str, str]) -> Reply:
    return call(
        stack.url, "POST", path, payload, **{k.replace("-", "_"): v for k, v in headers.items()}
    )


def test_a_stripe_event_replayed_with_changes_is_refused(hostile: Stack) -> None:
    payload = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "invoice.paid"}).encode()
    header = _stripe(payload)
    t, v1 = header.split(",")
    first = _post(hostile, "/hooks/stripe", payload, {"stripe-signature": header,
                                                       "content-type": "application/json"})  # fmt: skip
    assert first.status == 200, first.body
    before = hostile.upstream.count
    for signature, ctype in [
        (header, "application/json"),
        (f"{t},v1={'0' * 64},{v1}", "application/json"),  # an own v1 before the real one
        (f"{v1},{t}", "text/plain"),
        (f"{t},v1={'f' * 64},{v1}", "application/x-www-form-urlencoded"),
    ]:
        reply = _post(hostile, "/hooks/stripe", payload,
                      {"stripe-signature": signature, "content-type": ctype})  # fmt: skip
        assert reply.status != 200, (signature, ctype)
        assert "webhook.stripe.replay" in answer(reply.body).get("ruleHits", []) or (
            reply.status in (400, 403)
        )
    assert hostile.upstream.count == before


def test_a_github_delivery_replayed_with_a_new_id_is_refused(hostile: Stack) -> None:
    payload = json.dumps({"ref": "refs/heads/main", "after": uuid.uuid4().hex}).encode()
    sig = "sha256=" + hmac.new(GITHUB_SECRET, payload, hashlib.sha256).hexdigest()
    base = {
        "x-hub-signature-256": sig,
        "x-github-event": "push",
        "content-type": "application/json",
    }
    first = _post(hostile, "/hooks/github", payload, {**base, "x-github-delivery": "d-1"})
    assert first.status == 200, first.body
    before = hostile.upstream.count
    for extra in ({"x-github-delivery": "d-2"}, {}, {"x-github-delivery": str(uuid.uuid4())}):
        reply = _post(hostile, "/hooks/github", payload, {**base, **extra})
        assert reply.status == 403, (extra, reply.body)
        assert answer(reply.body)["ruleHits"] == ["webhook.github.replay"]
    assert hostile.upstream.count == before
    other = payload.replace(b"main", b"dev")
    sig2 = "sha256=" + hmac.new(GITHUB_SECRET, other, hashlib.sha256).hexdigest()
    second = _post(hostile, "/hooks/github", other, {**base, "x-hub-signature-256": sig2})
    assert second.status == 200, second.body


@pytest.mark.parametrize("claim", ["\ud800", "a\udfffb"])
def test_a_token_with_a_lone_surrogate_claim_is_envoys_401_in_both_modes(
    hostile: Stack, claim: str
) -> None:
    """jwt_authn refuses such a payload itself, alike in both modes: the PDP never sees it."""
    before = hostile.upstream.count
    token = mint_jwt(extra={"nick": claim})
    reply = call(hostile.url, "GET", "/who", authorization=f"Bearer {token}")
    assert reply.status == 401
    assert hostile.upstream.count == before
