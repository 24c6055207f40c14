"""The interface every webhook provider module implements, and the helpers they share.

A provider verifies what its sender signs; everything around that (a truncated body, raw
bytes that are missing, the allowed event types, the replay claim and its hits) is the
engine's webhook phase, the same for every provider.
"""

from __future__ import annotations

import hashlib
import hmac
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from ..context import HttpRequest

DEFAULT_TOLERANCE = 300
NO_TIMESTAMP_REPLAY_TTL = 86_400  # a provider that signs no timestamp: remember its ids a day
# The built-in hits of a webhook check: ``webhook.<provider>.<kind>``.
HIT_KINDS = ("signature", "eventType", "replay", "replayStoreUnavailable")


def hit_id(provider: str, kind: str) -> str:
    return f"webhook.{provider}.{kind}"


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

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    def json_field(self, *keys: str) -> str | None:
        """The string at ``keys`` in a JSON object body, or None."""
        node: Any = self.value if self.is_json else None
        for key in keys:
            if not isinstance(node, dict):
                return None
            node = node.get(key)
        return node if isinstance(node, str) else None


@dataclass(frozen=True, slots=True)
class Verified:
    """A delivery whose signature holds, what the check read to say so, and its event type
    (checked against ``allowedEventTypes``).

    ``replay_key`` gets this, and only this: a key made of ``signature``, ``timestamp`` and
    ``delivery.payload`` is made of authenticated material.
    """

    delivery: Delivery
    signature: str  # as sent (the first one, when the header lists several)
    timestamp: str | None = None  # the signed timestamp, for a provider that signs one
    event_type: str | None = None


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

            def replay_key(self, verified):
                return "sig:" + verified.signature

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

    @abstractmethod
    def replay_key(self, verified: Verified) -> str:
        """What identifies this event in the replay store (under the route's id)."""

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
