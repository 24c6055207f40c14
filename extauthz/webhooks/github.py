"""GitHub: ``x-hub-signature-256: sha256=<hex>``, HMAC-SHA256 of the body; no timestamp, so
a delivery id is remembered a day. The event type is the ``x-github-event`` header."""

from __future__ import annotations

import hmac

from ._provider import Delivery, Outcome, Outgoing, Provider, Verified, hmac_hex


class GitHub(Provider):
    name = "github"
    signature_header = "x-hub-signature-256"
    secret_env = "GITHUB_WEBHOOK_SECRET"
    # the SHA-1 header GitHub still sends, and the delivery id
    bypass_headers = ("x-hub-signature", "x-github-delivery")
    order = 2

    def verify(self, secret: bytes, delivery: Delivery, now: float, tolerance: int) -> Outcome:
        algo, _, sig = delivery.signature.partition("=")
        if algo != "sha256" or not sig:
            return "x-hub-signature-256 is not 'sha256=<hex>'"
        if not hmac.compare_digest(hmac_hex(secret, delivery.payload), sig):
            return "signature does not match"
        return Verified(delivery, sig, event_type=delivery.header("x-github-event"))

    def replay_key(self, verified: Verified) -> str:
        return verified.delivery.header("x-github-delivery") or f"sig:{verified.signature}"

    def sign(self, secret: bytes, out: Outgoing) -> dict[str, str]:
        return {"x-hub-signature-256": "sha256=" + hmac_hex(secret, out.raw)}


PROVIDER = GitHub()
