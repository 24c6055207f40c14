"""Stripe: ``stripe-signature: t=<unix time>,v1=<hex>[,v1=<hex>...]``, HMAC-SHA256 of
``<t>.<body>``; several ``v1`` entries while a secret is rolled, any may match."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from ._provider import Delivery, Provider, Verified, hmac_hex, is_timestamp, outside_tolerance


class Stripe(Provider):
    name = "stripe"
    signature_header = "stripe-signature"
    secret_env = "STRIPE_WEBHOOK_SECRET"
    timestamped = True
    never_logged = ("stripe-",)
    order = 1

    def verify(
        self, secret: bytes, delivery: Delivery, now: float, tolerance: int
    ) -> Verified | str:
        header = delivery.header("stripe-signature")
        if not header:
            return "missing stripe-signature header"
        ts: str | None = None
        sigs: list[str] = []
        for item in header.split(",")[:32]:
            key, _, value = item.strip().partition("=")
            if key == "t":
                ts = value
            elif key == "v1":
                sigs.append(value)
        if not sigs:
            return "no v1 signature in stripe-signature"
        if ts is None or not is_timestamp(ts):
            return "missing or invalid signature timestamp"
        expected = hmac_hex(secret, ts.encode() + b"." + delivery.payload)
        if not any(hmac.compare_digest(expected, s) for s in sigs):
            return "signature does not match"
        return outside_tolerance(ts, now, tolerance) or Verified(delivery, sigs[0], ts)

    def replay_key(self, verified: Verified) -> str:
        return verified.delivery.json_field("id") or f"sig:{verified.signature}"

    def event_type(self, verified: Verified) -> str | None:
        return verified.delivery.json_field("type")

    def sign(
        self,
        secret: bytes,
        raw: bytes,
        *,
        timestamp: int,
        url: str | None = None,
        form_pairs: Sequence[tuple[str, str]] = (),
    ) -> dict[str, str]:
        sig = hmac_hex(secret, str(timestamp).encode() + b"." + raw)
        return {"stripe-signature": f"t={timestamp},v1={sig}"}


PROVIDER = Stripe()
