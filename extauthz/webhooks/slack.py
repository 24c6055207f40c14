"""Slack: ``x-slack-signature: v0=<hex>``, HMAC-SHA256 of ``v0:<timestamp>:<body>``, the
timestamp in ``x-slack-request-timestamp``. Bodies are JSON (Events API) or forms (slash
commands, interactivity)."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from ._provider import Delivery, Provider, Verified, hmac_hex, is_timestamp, outside_tolerance


class Slack(Provider):
    name = "slack"
    signature_header = "x-slack-signature"
    secret_env = "SLACK_SIGNING_SECRET"
    timestamped = True
    never_logged = ("x-slack-",)
    order = 3

    def verify(
        self, secret: bytes, delivery: Delivery, now: float, tolerance: int
    ) -> Verified | str:
        header = delivery.header("x-slack-signature")
        ts = delivery.header("x-slack-request-timestamp")
        if not header:
            return "missing x-slack-signature header"
        if ts is None or not is_timestamp(ts):
            return "missing or invalid x-slack-request-timestamp"
        expected = "v0=" + hmac_hex(secret, b"v0:" + ts.encode() + b":" + delivery.payload)
        if not hmac.compare_digest(expected, header):
            return "signature does not match"
        return outside_tolerance(ts, now, tolerance) or Verified(delivery, header, ts)

    def replay_key(self, verified: Verified) -> str:
        event_id = verified.delivery.json_field("event_id")
        return event_id or f"{verified.timestamp}:{verified.signature}"

    def event_type(self, verified: Verified) -> str | None:
        delivery = verified.delivery
        if delivery.is_form and isinstance(delivery.value, dict):
            return delivery.value.get("command") or delivery.value.get("type")
        return delivery.json_field("event", "type") or delivery.json_field("type")

    def sign(
        self,
        secret: bytes,
        raw: bytes,
        *,
        timestamp: int,
        url: str | None = None,
        form_pairs: Sequence[tuple[str, str]] = (),
    ) -> dict[str, str]:
        sig = hmac_hex(secret, b"v0:" + str(timestamp).encode() + b":" + raw)
        return {"x-slack-signature": "v0=" + sig, "x-slack-request-timestamp": str(timestamp)}


PROVIDER = Slack()
