"""Demo credentials: HS256 JWTs and Stripe/GitHub webhook signatures, with the stdlib only.

Everything here signs with the *demo* secrets baked into ``policies/demo.yaml`` and the
generated Envoy config (``--demo-jwt``). They are public: never use them outside the demo.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..envoyconfig import DEMO_JWT_ISSUER, DEMO_JWT_KID, DEMO_JWT_SECRET

STRIPE_DEMO_SECRET = b"whsec_demo_contractshield"
GITHUB_DEMO_SECRET = b"github_demo_contractshield"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_jwt(
    subject: str = "alice",
    tenant: str = "acme",
    scopes: Sequence[str] = ("licenses:write",),
    *,
    ttl_seconds: int = 3600,
    now: float | None = None,
    secret: bytes = DEMO_JWT_SECRET,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """An HS256 token Envoy's demo ``jwt_authn`` provider accepts (kid + ``oct`` key)."""
    issued = int(time.time() if now is None else now)
    header = {"alg": "HS256", "typ": "JWT", "kid": DEMO_JWT_KID}
    claims: dict[str, Any] = {
        "iss": DEMO_JWT_ISSUER,
        "sub": subject,
        "tenant": tenant,
        "scope": " ".join(scopes),
        "iat": issued,
        "exp": issued + ttl_seconds,
        **(extra or {}),
    }
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def stripe_signature(
    payload: bytes, *, secret: bytes = STRIPE_DEMO_SECRET, timestamp: int | None = None
) -> str:
    """A ``Stripe-Signature`` header value: ``t=<ts>,v1=<hex HMAC-SHA256 of "ts.payload">``."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret, f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def github_signature(payload: bytes, *, secret: bytes = GITHUB_DEMO_SECRET) -> str:
    """An ``X-Hub-Signature-256`` header value: ``sha256=<hex HMAC-SHA256 of the body>``."""
    return "sha256=" + hmac.new(secret, payload, hashlib.sha256).hexdigest()
