"""Stripe: ``stripe-signature: t=<unix time>,v1=<hex>[,v1=<hex>...]``, HMAC-SHA256 of
``<t>.<body>``; several ``v1`` entries while a secret is rolled, any may match.

The replay key is the event ``id`` inside the signed body (read whatever the content type),
else a hash of ``<t>.<body>``: never a signature from the list, which a replayer can extend
(an extra ``v1=`` before the real one once changed the key)."""

from __future__ import annotations

import hmac

from ._provider import Delivery, Outcome, Outgoing, Provider, Verified, hmac_hex
from ._timestamp import is_timestamp, outside_tolerance


class Stripe(Provider):
    name = "stripe"
    signature_header = "stripe-signature"
    secret_env = "STRIPE_WEBHOOK_SECRET"
    timestamped = True
    order = 1

    def verify(self, secret: bytes, delivery: Delivery, now: float, tolerance: int) -> Outcome:
        ts: str | None = None
        sigs: list[str] = []
        for item in delivery.signature.split(",")[:32]:
            key, _, value = item.strip().partition("=")
            if key == "t":
                ts = value
            elif key == "v1":
                sigs.append(value)
        if not sigs:
            return "no v1 signature in stripe-signature"
        if ts is None or not is_timestamp(ts):
            return "missing or invalid signature timestamp"
        signed = ts.encode() + b"." + delivery.payload
        expected = hmac_hex(secret, signed)
        if not any(hmac.compare_digest(expected, s) for s in sigs):
            return "signature does not match"
        late = outside_tolerance(ts, now, tolerance)
        event_type, event_id = delivery.json_field("type"), delivery.json_field("id")
        return late or Verified(delivery, expected, ts, event_type, signed, event_id)

    def sign(self, secret: bytes, out: Outgoing) -> dict[str, str]:
        sig = hmac_hex(secret, str(out.timestamp).encode() + b"." + out.raw)
        return {"stripe-signature": f"t={out.timestamp},v1={sig}"}


PROVIDER = Stripe()
