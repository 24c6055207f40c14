"""Webhook hits: per provider (``webhook.<provider>.<kind>``). The id scheme and the kinds are
the provider registry's (``extauthz.webhooks``, which the client reads too); the catalogue adds
each kind's phase and explain text."""

from __future__ import annotations

from ...webhooks import HIT_KINDS, hit_id
from ._kinds import REPLAY, WEBHOOK

SIGNATURE, EVENT_TYPE, REPLAYED, STORE_UNAVAILABLE = HIT_KINDS
# Each hit kind and its phase: the signature and event type are checked in the webhook phase,
# the event id is claimed in the replay phase.
KINDS = {SIGNATURE: WEBHOOK, EVENT_TYPE: WEBHOOK, REPLAYED: REPLAY, STORE_UNAVAILABLE: REPLAY}
EXPLAIN = {
    SIGNATURE: "the delivery's signature is missing, stale or does not match the secret",
    EVENT_TYPE: "the signed event's type is not in allowedEventTypes",
    REPLAYED: "this event id was already delivered (replay)",
    STORE_UNAVAILABLE: "the replay store could not be asked whether the event id is new",
}


def hit_ids(provider: str) -> dict[str, str]:
    """Every webhook hit id of ``provider`` and its phase."""
    return {hit_id(provider, kind): phase for kind, phase in KINDS.items()}
