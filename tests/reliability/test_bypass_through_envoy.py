"""The demo-policy rows of the bypass catalogue, sent as raw bytes through a real Envoy.

The catalogue test proves what the engine decides for a CheckRequest; this one proves that
what an attacker puts on the wire reaches the PDP as the catalogue assumes, and that Envoy
never forwards a blocked request: for every BLOCK row the counting upstream stays still,
whether the PDP refused it or Envoy's own codec did first (a 400 without our JSON body).
Rows whose headers contain CR/LF cannot be one header on the wire and are left out.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from _reliability_support import (
    CATALOGUE,
    Stack,
    github_signature,
    mint_jwt,
    running_stack,
    stripe_signature,
)

pytestmark = pytest.mark.timeout(120)


def _rows() -> list[dict[str, Any]]:
    rows = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    out = []
    for row in rows:
        if row.get("policy", "demo") != "demo":
            continue
        headers = row["request"].get("headers") or {}
        if any("\r" in str(v) or "\n" in str(v) for v in headers.values()):
            continue
        out.append(row)
    return out


ROWS = _rows()

# Where Envoy changes the request before the PDP sees it, the outcome through Envoy differs
# from the engine-level row, for a reason worth stating (and asserting).
THROUGH_ENVOY: dict[str, dict[str, Any]] = {
    "absolute-form-target": {
        "action": "BLOCK",
        "status": 403,
        "hits": ["admin.denied"],
        "why": "Envoy turns absolute-form into origin-form (:path /admin/users, :authority "
        "internal.example), so the admin route decides",
    },
    # The shipped config's path hardening (normalize_path, merge_slashes): Envoy resolves the
    # path before asking, so the PDP sees /admin/users and the admin rule alone decides.
    **{
        name: {
            "action": "BLOCK",
            "status": 403,
            "hits": ["admin.denied"],
            "not_hits": ["vulnerability.pathTraversal", "request.path.ambiguous"],
            "why": "normalize_path decodes %2e and resolves dot segments (and turns a raw "
            "backslash into a slash) before ext_authz: the PDP sees /admin/users",
        }
        for name in (
            "dot-dot-percent-encoded",
            "dot-dot-encoded-under-an-open-route",
            "raw-backslashes",
            # Envoy reads '..;' and 'x;/..' as dot segments too (RFC 3986 has no path
            # parameters): the ';' is gone with the segment it sat in
            "path-parameter-dot-dot-semicolon",
            "semicolon-then-dot-dot",
        )
    },
    "stripe-truncated-body": {
        "action": "ALLOW",
        "status": 200,
        "why": "a client cannot claim a partial body: Envoy's ext_authz sets "
        "x-envoy-auth-partial-body itself (false: the body was complete), so the complete, "
        "validly signed delivery passes",
    },
}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as s:
        yield s


def _body(req: dict[str, Any]) -> bytes:
    if "body" in req:
        return str(req["body"]).encode()
    if "body_json" in req:
        return json.dumps(req["body_json"], ensure_ascii=False).encode()
    if "body_hex" in req:
        return bytes.fromhex(req["body_hex"])
    return b""


def _raw_request(row: dict[str, Any], run: str) -> bytes:
    req = row["request"]
    body = _body(req)
    headers = {str(k).lower(): str(v) for k, v in (req.get("headers") or {}).items()}
    if "sign" in req:
        spec = req["sign"]
        over = str(spec["over"]).encode() if "over" in spec else body
        secret = str(spec["secret"]).encode() if "secret" in spec else None
        kwargs: dict[str, Any] = {"secret": secret} if secret is not None else {}
        if spec["provider"] == "stripe":
            ts = int(time.time()) - int(spec.get("age", 0))
            headers["stripe-signature"] = stripe_signature(over, timestamp=ts, **kwargs)
        else:
            headers["x-hub-signature-256"] = github_signature(over, **kwargs)
    # Event ids must be fresh per run: the PDP's replay store lives as long as the stack.
    if "x-github-delivery" in headers:
        headers["x-github-delivery"] += f"-{run}"
    claims = req.get("claims")
    if claims is not None:
        extra = {k: v for k, v in claims.items() if k not in ("sub",)}
        headers["authorization"] = "Bearer " + mint_jwt(
            str(claims.get("sub", "alice")), extra=extra
        )
    elif req.get("auth"):
        headers["authorization"] = "Bearer " + mint_jwt("alice", "acme")
    headers["host"] = "api.example"
    headers["content-length"] = str(len(body))
    headers["connection"] = "close"
    lines = [f"{req['method']} ".encode() + str(req["path"]).encode("utf-8") + b" HTTP/1.1"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _send(port: int, data: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


def _event_id_fresh(row: dict[str, Any], run: str) -> dict[str, Any]:
    """Stripe rows carry their event id in the body: make it unique for this stack."""
    req = dict(row["request"])
    if "body" in req and '"id":"evt_' in str(req["body"]) and "over" not in req.get("sign", {}):
        req["body"] = str(req["body"]).replace('"id":"evt_', f'"id":"evt_{run}_')
    return {**row, "request": req}


@pytest.mark.parametrize("row", ROWS, ids=[r["name"] for r in ROWS])
def test_row_through_envoy(stack: Stack, row: dict[str, Any]) -> None:
    run = f"{time.monotonic_ns()}"
    row = _event_id_fresh(row, run)
    expect = THROUGH_ENVOY.get(row["name"], row["expect"])
    data = _raw_request(row, run)
    before = stack.upstream.count
    status, body = 0, b""
    for _ in range(int(row["request"].get("repeat", 1))):
        status, body = _send(stack.port, data)
    forwarded = stack.upstream.count - before
    where = f"{row['name']}: expected {expect}, got {status} {body[:300]!r}"
    if expect["action"] == "ALLOW":
        assert status == expect.get("status", 200), where
        assert forwarded >= 1, where
        return
    # BLOCK: nothing reached the upstream, whoever refused it.
    expected_forwards = int(row["request"].get("repeat", 1)) - 1  # earlier repeats may pass
    assert forwarded <= expected_forwards, where
    assert 400 <= status <= 599, where
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if row["request"]["method"].upper() == "HEAD":  # no body in a HEAD response
        assert status == expect.get("status", status), where
    elif isinstance(answer, dict) and "ruleHits" in answer:  # the PDP decided
        assert status == expect.get("status", status), where
        for hit in expect.get("hits", ()):
            assert hit in answer["ruleHits"], where
        for hit in expect.get("not_hits", ()):
            assert hit not in answer["ruleHits"], where
    else:  # Envoy refused it before asking (its HTTP codec): only a 400 is acceptable
        assert status == 400, where


def test_most_rows_reach_the_pdp(stack: Stack) -> None:
    """Guard: the test above must not pass only because Envoy rejects everything itself."""
    answered_by_pdp = 0
    for row in ROWS:
        if row["expect"]["action"] != "BLOCK" or row["request"].get("repeat"):
            continue
        _, body = _send(stack.port, _raw_request(row, f"guard{time.monotonic_ns()}"))
        with contextlib.suppress(ValueError):
            answered_by_pdp += "ruleHits" in json.loads(body)
    blocks = sum(
        1 for r in ROWS if r["expect"]["action"] == "BLOCK" and not r["request"].get("repeat")
    )
    assert answered_by_pdp >= 0.8 * blocks, (answered_by_pdp, blocks)
