"""The interface every webhook provider module implements, and the helpers they share.

A provider verifies what its sender signs; everything around that (a truncated body, raw
bytes that are missing, the allowed event types, the replay claim and its hits) is the
engine's webhook phase, the same for every provider.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

from ..context import HttpRequest

DEFAULT_TOLERANCE = 300
NO_TIMESTAMP_REPLAY_TTL = 86_400  # a provider that signs no timestamp: remember its ids a day
# The built-in hits of a webhook check: ``webhook.<provider>.<kind>``.
HIT_KINDS = ("signature", "eventType", "replay", "replayStoreUnavailable")


def hit_id(provider: str, kind: str) -> str:
    return f"webhook.{provider}.{kind}"


_UNPARSED: Any = object()


_FAST_LOADS: list[Any] = []  # orjson.loads, or None; imported on first use (see below)


def _fast_loads() -> Any:
    """orjson's ``loads`` (~1 µs for a typical event, ``json.loads`` ~5 µs), imported on first
    use: ``extauthz.client`` imports this package and must not load orjson."""
    if not _FAST_LOADS:
        try:
            from orjson import loads
        except ImportError:  # not installed: the standard library is enough
            loads = None
        _FAST_LOADS.append(loads)
    return _FAST_LOADS[0]


def _json_document(payload: bytes) -> Any:
    """The payload read as JSON whatever its content type says, or None when it is not JSON.

    A pure function of the bytes: orjson first, and what orjson refuses (a BOM, a lone
    surrogate, an integer beyond 64 bits) by the standard library, which reads the same JSON.
    """
    start = payload.lstrip()[:1]
    if start not in (b"{", b"[", b"\xef"):  # an object, an array, or a UTF-8 BOM before one
        return None
    fast = _fast_loads()
    if fast is not None:
        try:
            return fast(payload)
        except ValueError:
            pass
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook request as a provider reads it.

    ``payload`` is the bytes the signature must cover (the raw body; with
    ``requireRawBody: false``, the compact JSON of an adapter's parsed sample), ``signature``
    what the provider's ``signature_header`` holds, ``value`` the body as the body phase
    decoded it (a JSON value, a form's dict, or None; ``is_json``/``is_form`` say which).
    Until ``verify`` accepts the signature, all of it is attacker-controlled text.
    """

    request: HttpRequest
    payload: bytes
    signature: str  # the signature header's value, never empty (the phase checks)
    value: Any = None
    is_json: bool = False
    is_form: bool = False
    form_pairs: tuple[tuple[str, str], ...] = ()
    _document: Any = field(default=_UNPARSED, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    def signed_json(self) -> Any:
        """``payload`` parsed as JSON (None when it is not), read from the signed bytes
        themselves: what a provider reads from the body is then the same whatever
        ``content-type`` the request claims (a label is not signed)."""
        document = self._document
        if document is _UNPARSED:
            document = _json_document(self.payload)
            object.__setattr__(self, "_document", document)
        return document

    def json_field(self, *keys: str) -> str | None:
        """The string at ``keys`` in the signed payload read as a JSON object, or None."""
        node: Any = self.signed_json()
        for key in keys:
            if not isinstance(node, dict):
                return None
            node = node.get(key)
        return node if isinstance(node, str) else None


@dataclass(frozen=True, slots=True)
class Verified:
    """A delivery whose signature holds, what the check read to say so, and its event type
    (checked against ``allowedEventTypes``).

    ``replay_key`` gets this, and only this. ``signed`` is the exact byte string the MAC
    covers (default: the timestamp and the payload); ``event_id`` an id read from inside it
    (never from a header: headers around the signature are the attacker's to change).
    """

    delivery: Delivery
    signature: str  # the one that matched (a header may list several while a secret rolls)
    timestamp: str | None = None  # the signed timestamp, for a provider that signs one
    event_type: str | None = None
    signed: bytes | None = None
    event_id: str | None = None

    @property
    def material(self) -> bytes:
        """What the MAC covered: ``signed``, else the timestamp and the payload."""
        if self.signed is not None:
            return self.signed
        return (self.timestamp or "").encode() + b"\n" + self.delivery.payload


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What a sender signs (``Provider.sign``): the body, when, and for a provider that signs
    them, the URL and the form's fields."""

    raw: bytes
    timestamp: int
    url: str | None = None
    form_pairs: Sequence[tuple[str, str]] = ()


Outcome: TypeAlias = Verified | str  # what ``verify`` returns: a refusal is its reason
Headers: TypeAlias = dict[str, str]


class Provider(ABC):
    """A webhook sender whose signatures the engine verifies: one module of this package.

    A new provider is a file ``extauthz/webhooks/<name>.py`` with a subclass and
    ``PROVIDER = TheSubclass()``; the registry finds it. Sketch (``acme`` signs the body with
    HMAC-SHA256 and sends the hex digest in ``x-acme-signature``)::

        class Acme(Provider):
            name = "acme"
            signature_header = "x-acme-signature"
            secret_env = "ACME_WEBHOOK_SECRET"

            def verify(self, secret, delivery, now, tolerance):
                sig = delivery.signature
                if not hmac.compare_digest(hmac_hex(secret, delivery.payload), sig):
                    return "signature does not match"
                return Verified(delivery, sig, event_type=delivery.json_field("type"))

            def sign(self, secret, out):
                return {self.signature_header: hmac_hex(secret, out.raw)}

        PROVIDER = Acme()

    The headers of its family (the signature header up to the provider's name, ``x-acme-*``)
    are never written to the decision log.
    """

    #: The policy's ``webhook.provider``, and the middle of the hit ids.
    name: ClassVar[str]
    #: Where the signature is read (a policy's ``webhook.header`` may only repeat it); a
    #: delivery without it is refused before ``verify``.
    signature_header: ClassVar[str]
    #: Where the secret comes from when the policy names none: the provider's usual variable.
    secret_env: ClassVar[str]
    #: Signs a timestamp (refused outside the tolerance): a replayed id need only be
    #: remembered that long.
    timestamped: ClassVar[bool] = False
    #: Other headers that mark one of its deliveries: the client's cache never stores a
    #: request carrying any of them (a replay is byte-identical), nor the signature header.
    bypass_headers: ClassVar[tuple[str, ...]] = ()
    #: Its place in lists users read (the schema's enum, its error message); the built-ins
    #: keep the order they were documented in, a new one may keep the default (after them).
    order: ClassVar[int] = 100

    def __init__(self) -> None:
        ids = [hit_id(self.name, kind) for kind in HIT_KINDS]
        self.hit_ids: tuple[str, ...] = tuple(ids)
        self.signature_id, self.event_type_id, self.replay_id, self.unavailable_id = ids
        header, at = self.signature_header, self.signature_header.find(self.name)
        #: the prefix of its header family: never logged
        self.header_family = header[: at + len(self.name) + 1] if at >= 0 else header

    def __repr__(self) -> str:  # WebhookConfig's repr shows it
        return f"<webhook provider {self.name!r}>"

    @abstractmethod
    def verify(self, secret: bytes, delivery: Delivery, now: float, tolerance: int) -> Outcome:
        """The verified delivery, or why its signature does not hold (the hit's message).

        Compare with ``hmac.compare_digest``; check a timestamp only once the signature
        holds, with ``outside_tolerance``; read the event type only then.
        """

    def replay_key(self, verified: Verified) -> str:
        """What identifies this event in the replay store (under the route's id): the signed
        event id, else a hash of the signed material.

        Nothing the attacker chooses around a valid signature changes it: not an unsigned
        header (a delivery id), the content type, nor which of several listed signatures
        matched; nor the secret (a rotated secret does not re-open a window).
        """
        if verified.event_id:
            return verified.event_id
        return "sha256:" + hashlib.sha256(verified.material).hexdigest()

    @abstractmethod
    def sign(self, secret: bytes, out: Outgoing) -> Headers:
        """The headers the provider would send with ``out`` (tests, examples, the demo)."""

    def sign_request(self, secret: bytes, request: HttpRequest, raw: bytes, ts: int) -> Headers:
        """``sign`` for ``request`` carrying ``raw`` (``extauthz test``'s ``sign``): a provider
        that signs more than the body (the URL, the form fields) takes them from ``request``."""
        return self.sign(secret, Outgoing(raw, ts))

    def replay_ttl(self, tolerance: int) -> int:
        """How long a claimed key is kept: past the tolerance window on both sides, or a day
        when nothing signed says how old a delivery is."""
        return 2 * tolerance + 60 if self.timestamped else NO_TIMESTAMP_REPLAY_TTL


def hmac_hex(secret: bytes, data: bytes, algo: Callable[..., Any] = hashlib.sha256) -> str:
    return hmac.new(secret, data, algo).hexdigest()
