"""Webhook signatures (Stripe, GitHub, Slack, Twilio) and what replay protection keys on.

Every provider signs the exact bytes it sent, so verification needs the raw body: a body
the proxy truncated (``partial``) or a context without raw bytes is a signature hit with a
reason that says so, never a silent pass. Comparisons use ``hmac.compare_digest``. The event
type is checked against ``allowedEventTypes`` only once the signature holds (before that it
is attacker-controlled text).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ..context import HttpRequest
from ..decision import RuleHit
from .body import FORM, JSON, ParsedBody
from .checks.webhook import EVENT_TYPE, REPLAYED, SIGNATURE, STORE_UNAVAILABLE, hit_id

PROVIDERS = ("stripe", "github", "slack", "twilio")
TIMESTAMPED = frozenset({"stripe", "slack"})
DEFAULT_TOLERANCE = 300
NO_TIMESTAMP_REPLAY_TTL = 86_400  # GitHub and Twilio sign no timestamp: remember ids a day


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    provider: str
    secret: bytes
    tolerance: int = DEFAULT_TOLERANCE
    replay_protection: bool = True
    allowed_event_types: frozenset[str] | None = None
    require_raw_body: bool = True

    @property
    def signature_id(self) -> str:
        return hit_id(self.provider, SIGNATURE)

    @property
    def replay_id(self) -> str:
        return hit_id(self.provider, REPLAYED)

    @property
    def event_type_id(self) -> str:
        return hit_id(self.provider, EVENT_TYPE)

    @property
    def unavailable_id(self) -> str:
        return hit_id(self.provider, STORE_UNAVAILABLE)

    @property
    def replay_ttl(self) -> int:
        if self.provider in TIMESTAMPED:
            return 2 * self.tolerance + 60
        return NO_TIMESTAMP_REPLAY_TTL


@dataclass(frozen=True, slots=True)
class Verified:
    """A valid signature: the event's identity for the replay store."""

    event_id: str
    event_type: str | None


def _hmac_hex(secret: bytes, data: bytes, algo: Any = hashlib.sha256) -> str:
    return hmac.new(secret, data, algo).hexdigest()


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
    sample = json.dumps(body.json.sample, separators=(",", ":"), ensure_ascii=False)
    return sample.encode("utf-8"), None


def _json_field(parsed: ParsedBody, *keys: str) -> str | None:
    node: Any = parsed.value if parsed.kind == JSON else None
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node if isinstance(node, str) else None


def _timestamp(cfg: WebhookConfig, text: str | None, now: float) -> str | None:
    """Return an error text, or None when the timestamp is within tolerance."""
    if text is None or not text.isdigit() or len(text) > 12:
        return "missing or invalid signature timestamp"
    if abs(now - int(text)) > cfg.tolerance:
        return f"signature timestamp is outside the {cfg.tolerance} s tolerance"
    return None


def _stripe(
    cfg: WebhookConfig, request: HttpRequest, raw: bytes, parsed: ParsedBody, now: float
) -> Verified | str:
    header = request.headers.get("stripe-signature")
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
    if ts is None or not ts.isdigit() or len(ts) > 12:
        return "missing or invalid signature timestamp"
    expected = _hmac_hex(cfg.secret, ts.encode() + b"." + raw)
    if not any(hmac.compare_digest(expected, s) for s in sigs):
        return "signature does not match"
    late = _timestamp(cfg, ts, now)
    if late:
        return late
    event_id = _json_field(parsed, "id") or f"sig:{sigs[0]}"
    return Verified(event_id, _json_field(parsed, "type"))


def _github(
    cfg: WebhookConfig, request: HttpRequest, raw: bytes, parsed: ParsedBody, now: float
) -> Verified | str:
    header = request.headers.get("x-hub-signature-256")
    if not header:
        return "missing x-hub-signature-256 header"
    algo, _, sig = header.partition("=")
    if algo != "sha256" or not sig:
        return "x-hub-signature-256 is not 'sha256=<hex>'"
    if not hmac.compare_digest(_hmac_hex(cfg.secret, raw), sig):
        return "signature does not match"
    delivery = request.headers.get("x-github-delivery") or f"sig:{sig}"
    return Verified(delivery, request.headers.get("x-github-event"))


def _slack(
    cfg: WebhookConfig, request: HttpRequest, raw: bytes, parsed: ParsedBody, now: float
) -> Verified | str:
    header = request.headers.get("x-slack-signature")
    ts = request.headers.get("x-slack-request-timestamp")
    if not header:
        return "missing x-slack-signature header"
    if ts is None or not ts.isdigit() or len(ts) > 12:
        return "missing or invalid x-slack-request-timestamp"
    expected = "v0=" + _hmac_hex(cfg.secret, b"v0:" + ts.encode() + b":" + raw)
    if not hmac.compare_digest(expected, header):
        return "signature does not match"
    late = _timestamp(cfg, ts, now)
    if late:
        return late
    event_id = _json_field(parsed, "event_id") or f"{ts}:{header}"
    if parsed.kind == FORM and isinstance(parsed.value, dict):
        event_type = parsed.value.get("command") or parsed.value.get("type")
    else:
        event_type = _json_field(parsed, "event", "type") or _json_field(parsed, "type")
    return Verified(event_id, event_type)


def twilio_urls(request: HttpRequest) -> list[str]:
    """The URLs Twilio may have signed: with and without the default port."""
    headers = request.headers
    scheme = request.scheme or headers.get("x-forwarded-proto", "https").split(",")[0].strip()
    host = request.host or headers.get("host") or headers.get(":authority") or ""
    query = ("?" + urlencode(list(request.query.items()))) if request.query else ""
    base = f"{scheme}://{host}{request.path}{query}"
    urls = [base]
    default_port = {"https": "443", "http": "80"}.get(scheme)
    if default_port and host.endswith(":" + default_port):
        urls.append(f"{scheme}://{host.rsplit(':', 1)[0]}{request.path}{query}")
    elif default_port and ":" not in host:
        urls.append(f"{scheme}://{host}:{default_port}{request.path}{query}")
    return urls


def twilio_signature(secret: bytes, url: str, pairs: Sequence[tuple[str, str]]) -> str:
    data = url + "".join(k + v for k, v in sorted(pairs))
    digest = hmac.new(secret, data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _twilio(
    cfg: WebhookConfig, request: HttpRequest, raw: bytes, parsed: ParsedBody, now: float
) -> Verified | str:
    header = request.headers.get("x-twilio-signature")
    if not header:
        return "missing x-twilio-signature header"
    pairs = parsed.form_pairs if parsed.kind == FORM else ()
    if raw and parsed.kind != FORM:
        return "Twilio signs form bodies (application/x-www-form-urlencoded) only"
    if not any(
        hmac.compare_digest(twilio_signature(cfg.secret, url, pairs), header)
        for url in twilio_urls(request)
    ):
        return "signature does not match"
    token = request.headers.get("i-twilio-idempotency-token")
    form = parsed.value if isinstance(parsed.value, dict) else {}
    sid = form.get("MessageSid") or form.get("CallSid") or form.get("SmsSid")
    event_id = token or (f"{sid}:{header}" if sid else f"sig:{header}")
    return Verified(event_id, form.get("SmsStatus") or form.get("CallStatus"))


_VERIFIERS = {"stripe": _stripe, "github": _github, "slack": _slack, "twilio": _twilio}


def verify(
    cfg: WebhookConfig, request: HttpRequest, parsed: ParsedBody, now: float, hits: list[RuleHit]
) -> Verified | None:
    """Append signature/event-type hits; return the verified event, or None."""
    raw, problem = _payload(cfg, request)
    if raw is None:
        hits.append(RuleHit(cfg.signature_id, "critical", problem or "no body"))
        return None
    result = _VERIFIERS[cfg.provider](cfg, request, raw, parsed, now)
    if isinstance(result, str):
        hits.append(RuleHit(cfg.signature_id, "critical", result))
        return None
    allowed = cfg.allowed_event_types
    if allowed is not None and (result.event_type is None or result.event_type not in allowed):
        hits.append(
            RuleHit(
                cfg.event_type_id,
                "med",
                f"event type {str(result.event_type)[:80]!r} is not allowed",
            )
        )
    return result


def sign(
    provider: str,
    secret: str | bytes,
    raw: bytes,
    *,
    timestamp: int,
    url: str | None = None,
    form_pairs: Sequence[tuple[str, str]] = (),
) -> dict[str, str]:
    """Headers a provider would send for ``raw`` (tests, examples and the demo use this)."""
    key = secret.encode() if isinstance(secret, str) else secret
    if provider == "stripe":
        sig = _hmac_hex(key, str(timestamp).encode() + b"." + raw)
        return {"stripe-signature": f"t={timestamp},v1={sig}"}
    if provider == "github":
        return {"x-hub-signature-256": "sha256=" + _hmac_hex(key, raw)}
    if provider == "slack":
        sig = _hmac_hex(key, b"v0:" + str(timestamp).encode() + b":" + raw)
        return {"x-slack-signature": "v0=" + sig, "x-slack-request-timestamp": str(timestamp)}
    if provider == "twilio":
        if url is None:
            raise ValueError("twilio signatures need the full request URL")
        return {"x-twilio-signature": twilio_signature(key, url, form_pairs)}
    raise ValueError(f"unknown webhook provider {provider!r}")


def headers_with(headers: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    out = dict(headers)
    out.update(extra)
    return out
