"""Webhook hits: per provider (``webhook.<provider>.<kind>``), so the ids come from a function
of the provider name; the providers themselves live with the webhook verifiers."""

from __future__ import annotations

from ._kinds import REPLAY, WEBHOOK

SIGNATURE = "signature"
EVENT_TYPE = "eventType"
REPLAYED = "replay"
STORE_UNAVAILABLE = "replayStoreUnavailable"
# Each hit kind and its phase: the signature and event type are checked in the webhook phase,
# the event id is claimed in the replay phase.
KINDS = {SIGNATURE: WEBHOOK, EVENT_TYPE: WEBHOOK, REPLAYED: REPLAY, STORE_UNAVAILABLE: REPLAY}
EXPLAIN = {
    SIGNATURE: "the delivery's signature is missing, stale or does not match the secret",
    EVENT_TYPE: "the signed event's type is not in allowedEventTypes",
    REPLAYED: "this event id was already delivered (replay)",
    STORE_UNAVAILABLE: "the replay store could not be asked whether the event id is new",
}


def hit_id(provider: str, kind: str) -> str:
    return f"webhook.{provider}.{kind}"


def hit_ids(provider: str) -> dict[str, str]:
    """Every webhook hit id of ``provider`` and its phase."""
    return {hit_id(provider, kind): phase for kind, phase in KINDS.items()}
