"""Twilio: ``x-twilio-signature``, base64 HMAC-SHA1 of the full URL followed by the form's
fields sorted by name (each name then its value); form bodies only, no timestamp.

The replay key is a hash of that signed string (the URL that matched and the sorted fields):
``i-twilio-idempotency-token`` is not signed, and neither is the body's byte form (field
order, percent-encoding), so a replay keyed on either would pass with a new token or a
re-encoded body."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from ..context import HttpRequest
from ._provider import Delivery, Headers, Outcome, Outgoing, Provider, Verified


def urls(request: HttpRequest) -> list[str]:
    """The URLs Twilio may have signed: with and without the default port."""
    headers = request.headers
    scheme = request.scheme or headers.get("x-forwarded-proto", "https").split(",")[0].strip()
    host = request.host or headers.get("host") or headers.get(":authority") or ""
    query = ("?" + urlencode(list(request.query.items()))) if request.query else ""
    base = f"{scheme}://{host}{request.path}{query}"
    found = [base]
    default_port = {"https": "443", "http": "80"}.get(scheme)
    if default_port and host.endswith(":" + default_port):
        found.append(f"{scheme}://{host.rsplit(':', 1)[0]}{request.path}{query}")
    elif default_port and ":" not in host:
        found.append(f"{scheme}://{host}:{default_port}{request.path}{query}")
    return found


def signed_data(url: str, pairs: Sequence[tuple[str, str]]) -> bytes:
    """What Twilio signs: the URL, then each field's name and value, sorted by name."""
    return (url + "".join(k + v for k, v in sorted(pairs))).encode("utf-8", "surrogatepass")


def signature(secret: bytes, url: str, pairs: Sequence[tuple[str, str]]) -> str:
    digest = hmac.new(secret, signed_data(url, pairs), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _form(delivery: Delivery) -> dict[str, Any]:
    return delivery.value if isinstance(delivery.value, dict) else {}


class Twilio(Provider):
    name = "twilio"
    signature_header = "x-twilio-signature"
    secret_env = "TWILIO_AUTH_TOKEN"
    order = 4

    def verify(self, secret: bytes, delivery: Delivery, now: float, tolerance: int) -> Outcome:
        pairs = delivery.form_pairs if delivery.is_form else ()
        if delivery.payload and not delivery.is_form:
            return "Twilio signs form bodies (application/x-www-form-urlencoded) only"
        for url in urls(delivery.request):
            if hmac.compare_digest(signature(secret, url, pairs), delivery.signature):
                break
        else:
            return "signature does not match"
        form = _form(delivery)
        event_type = form.get("SmsStatus") or form.get("CallStatus")
        signed = signed_data(url, pairs)
        return Verified(delivery, delivery.signature, None, event_type, signed)

    def sign(self, secret: bytes, out: Outgoing) -> dict[str, str]:
        if out.url is None:
            raise ValueError("twilio signatures need the full request URL")
        return {"x-twilio-signature": signature(secret, out.url, out.form_pairs)}

    def sign_request(self, secret: bytes, request: HttpRequest, raw: bytes, ts: int) -> Headers:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True) if raw else []
        return self.sign(secret, Outgoing(raw, ts, urls(request)[0], pairs))


PROVIDER = Twilio()
