"""Slack: ``x-slack-signature: v0=<hex>``, HMAC-SHA256 of ``v0:<timestamp>:<body>``, the
timestamp in ``x-slack-request-timestamp``. Bodies are JSON (Events API) or forms (slash
commands, interactivity). The replay key is the signed body's ``event_id`` (Events API, read
from the signed bytes whatever the content type), else a hash of ``v0:<ts>:<body>``."""

from __future__ import annotations

import hmac

from ._provider import Delivery, Outcome, Outgoing, Provider, Verified, hmac_hex
from ._timestamp import is_timestamp, outside_tolerance


def _event_type(delivery: Delivery) -> str | None:
    if delivery.is_form and isinstance(delivery.value, dict):
        return delivery.value.get("command") or delivery.value.get("type")
    return delivery.json_field("event", "type") or delivery.json_field("type")


class Slack(Provider):
    name = "slack"
    signature_header = "x-slack-signature"
    secret_env = "SLACK_SIGNING_SECRET"
    timestamped = True
    timestamp_header = "x-slack-request-timestamp"  # the timestamp is signed with the body
    order = 3

    def verify(self, secret: bytes, delivery: Delivery, now: float, tolerance: int) -> Outcome:
        ts = delivery.header(self.timestamp_header)
        if ts is None or not is_timestamp(ts):
            return f"missing or invalid {self.timestamp_header}"
        signed = b"v0:" + ts.encode() + b":" + delivery.payload
        if not hmac.compare_digest("v0=" + hmac_hex(secret, signed), delivery.signature):
            return "signature does not match"
        late = outside_tolerance(ts, now, tolerance)
        event_id = delivery.json_field("event_id")
        return late or Verified(
            delivery, delivery.signature, ts, _event_type(delivery), signed, event_id
        )

    def sign(self, secret: bytes, out: Outgoing) -> dict[str, str]:
        sig = hmac_hex(secret, b"v0:" + str(out.timestamp).encode() + b":" + out.raw)
        return {"x-slack-signature": "v0=" + sig, self.timestamp_header: str(out.timestamp)}


PROVIDER = Slack()
