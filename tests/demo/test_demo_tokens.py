"""Demo credentials: the JWTs Envoy verifies and the webhook signatures the policy checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import yaml

from extauthz.demo.tokens import github_signature, mint_jwt, stripe_signature
from extauthz.demo.tour import (
    ADMIN_RULE_EXPR,
    StepResult,
    allow_admin_scope,
    format_header,
    format_row,
    summary,
)
from extauthz.envoyconfig import demo_jwks


def _part(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def test_jwt_is_hs256_signed_with_the_key_in_the_envoy_jwks() -> None:
    token = mint_jwt("bob", "globex", ("a", "b"), now=1000, ttl_seconds=60)
    header, claims, signature = token.split(".")
    assert _part(header) == {"alg": "HS256", "typ": "JWT", "kid": "contractshield-demo"}
    assert _part(claims) == {
        "iss": "contractshield-demo",
        "sub": "bob",
        "tenant": "globex",
        "scope": "a b",
        "iat": 1000,
        "exp": 1060,
    }
    (key,) = json.loads(demo_jwks())["keys"]
    secret = base64.urlsafe_b64decode(key["k"] + "=" * (-len(key["k"]) % 4))
    expected = hmac.new(secret, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)) == expected
    assert key["kid"] == _part(header)["kid"]


def test_stripe_signature_format() -> None:
    sig = stripe_signature(b"{}", secret=b"s", timestamp=12)
    assert sig == "t=12,v1=" + hmac.new(b"s", b"12.{}", hashlib.sha256).hexdigest()


def test_github_signature_format() -> None:
    assert github_signature(b"x", secret=b"k") == (
        "sha256=" + hmac.new(b"k", b"x", hashlib.sha256).hexdigest()
    )


def test_admin_edit_changes_only_that_rule(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    doc = {
        "routes": [
            {
                "id": "admin",
                "rules": [{"id": "admin.denied", "type": "cel", "config": {"expr": "false"}}],
            },
            {"id": "other", "rules": [{"id": "x", "type": "cel", "config": {"expr": "false"}}]},
        ]
    }
    policy.write_text(yaml.safe_dump(doc))
    allow_admin_scope(policy)
    after = yaml.safe_load(policy.read_text())
    assert after["routes"][0]["rules"][0]["config"]["expr"] == ADMIN_RULE_EXPR
    assert after["routes"][1] == doc["routes"][1]


def test_table_rows_show_status_and_mismatch() -> None:
    good = StepResult(1, "clean", "GET /", 200, 200, "ALLOW", ())
    bad = StepResult(2, "evil", "POST /x", 403, 200, "ALLOW", ("a", "b"), note="n")
    assert "status" in format_header()
    assert "MISMATCH" not in format_row(good)
    row = format_row(bad)
    assert "MISMATCH" in row and "a, b" in row and row.endswith("n")
    assert summary([good]) == "all 1 steps matched expectations"
    assert "#2" in summary([good, bad])
