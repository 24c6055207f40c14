"""GitHub: ``x-hub-signature-256: sha256=<hex>``, HMAC-SHA256 of the body; no timestamp, so
a replay key is remembered a day. The event type is the ``x-github-event`` header.

``x-github-delivery`` is not signed: a captured delivery replays with a new id or none, so the
replay key is a hash of the signed body (the default ``replay_key``), never that header."""

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
        event_type = delivery.header("x-github-event")
        return Verified(delivery, sig, event_type=event_type, signed=delivery.payload)

    def sign(self, secret: bytes, out: Outgoing) -> dict[str, str]:
        return {"x-hub-signature-256": "sha256=" + hmac_hex(secret, out.raw)}


PROVIDER = GitHub()
