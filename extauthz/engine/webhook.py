"""The webhook phase: what every provider's check shares (the providers are ``extauthz.webhooks``).

Every provider signs the exact bytes it sent, so verification needs the raw body: a body
the proxy truncated (``partial``) or a context without raw bytes is a signature hit with a
reason that says so, never a silent pass. The event type is checked against
``allowedEventTypes`` only once the signature holds (before that it is attacker-controlled
text).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._json import COMPACT
from ..context import HttpRequest
from ..decision import RuleHit
from ..webhooks import DEFAULT_TOLERANCE, Delivery, Provider
from .body import FORM, JSON, ParsedBody

__all__ = ["DEFAULT_TOLERANCE", "Event", "WebhookConfig", "verify"]

_IDS = ("signature_id", "event_type_id", "replay_id", "unavailable_id")


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    scheme: Provider  # the registered provider that verifies
    secret: bytes
    tolerance: int = DEFAULT_TOLERANCE
    replay_protection: bool = True
    allowed_event_types: frozenset[str] | None = None
    require_raw_body: bool = True
    # the provider's built-in hit ids, copied for the pipeline's reads
    signature_id: str = field(init=False, repr=False, compare=False)
    event_type_id: str = field(init=False, repr=False, compare=False)
    replay_id: str = field(init=False, repr=False, compare=False)
    unavailable_id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for attr in _IDS:
            object.__setattr__(self, attr, getattr(self.scheme, attr))

    @property
    def provider(self) -> str:
        return self.scheme.name

    @property
    def replay_ttl(self) -> int:
        return self.scheme.replay_ttl(self.tolerance)


@dataclass(frozen=True, slots=True)
class Event:
    """A delivery whose signature holds: its identity for the replay store, and its type."""

    event_id: str
    event_type: str | None


def _payload(cfg: WebhookConfig, request: HttpRequest) -> tuple[bytes | None, str | None]:
    body = request.body
    if body.partial:
        return None, (
            "the proxy sent only part of the body (partial); the signature cannot be "
            "verified — raise the proxy's max_request_bytes above the largest webhook"
        )
    if body.raw is not None:
        return body.raw, None
    if not body.present:
        return b"", None
    if cfg.require_raw_body or body.json is None:
        return None, "the raw body bytes are not available (requireRawBody)"
    return COMPACT.encode(body.json.sample).encode("utf-8"), None


def verify(
    cfg: WebhookConfig, request: HttpRequest, parsed: ParsedBody, now: float, hits: list[RuleHit]
) -> Event | None:
    """Append signature/event-type hits; return the verified event, or None."""
    payload, problem = _payload(cfg, request)
    if payload is None:
        hits.append(RuleHit(cfg.signature_id, "critical", problem or "no body"))
        return None
    scheme = cfg.scheme
    signature = request.headers.get(scheme.signature_header)
    if not signature:
        hits.append(
            RuleHit(cfg.signature_id, "critical", f"missing {scheme.signature_header} header")
        )
        return None
    kind = parsed.kind
    delivery = Delivery(
        request, payload, signature, parsed.value, kind == JSON, kind == FORM, parsed.form_pairs
    )
    result = scheme.verify(cfg.secret, delivery, now, cfg.tolerance)
    if isinstance(result, str):
        hits.append(RuleHit(cfg.signature_id, "critical", result))
        return None
    event = Event(scheme.replay_key(result), result.event_type)
    allowed = cfg.allowed_event_types
    if allowed is not None and (event.event_type is None or event.event_type not in allowed):
        hits.append(
            RuleHit(
                cfg.event_type_id,
                "med",
                f"event type {str(event.event_type)[:80]!r} is not allowed",
            )
        )
    return event
