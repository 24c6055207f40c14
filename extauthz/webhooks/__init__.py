"""Webhook providers: one module each, registered when this package is imported.

Adding a provider is adding ``extauthz/webhooks/<name>.py`` (a ``Provider`` subclass and
``PROVIDER = TheSubclass()``, see ``Provider``) and its tests. Every list of providers is read
from this registry: the policy schema's ``provider`` enum, the compiler (default secret
variable, signature header, built-in hit ids), ``extauthz test``'s ``sign``, the engine's
webhook phase, the client's cache bypass headers and the decision log's never-logged headers.

Standard library only (``extauthz.client`` imports it). Those readers take their copy when
they are imported: ``register`` (tests, an embedding application) must run before them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .._plugins import submodules
from ._provider import (
    DEFAULT_TOLERANCE,
    HIT_KINDS,
    NO_TIMESTAMP_REPLAY_TTL,
    Delivery,
    Outcome,
    Outgoing,
    Provider,
    Verified,
    hit_id,
    hmac_hex,
)
from ._timestamp import is_timestamp, outside_tolerance

__all__ = [
    "DEFAULT_TOLERANCE",
    "HIT_KINDS",
    "NO_TIMESTAMP_REPLAY_TTL",
    "Delivery",
    "Outcome",
    "Outgoing",
    "Provider",
    "Verified",
    "cache_bypass_headers",
    "find",
    "get",
    "hit_id",
    "hit_ids",
    "hmac_hex",
    "is_timestamp",
    "names",
    "never_logged_headers",
    "outside_tolerance",
    "providers",
    "register",
    "sign",
    "unregister",
]

_REGISTRY: dict[str, Provider] = {}
# A name becomes part of hit ids (``webhook.<name>.signature``) and of the schema's enum.
_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")
_HEADER = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+\Z")  # an HTTP field name, lower case


def register(provider: Provider) -> Provider:
    """Add ``provider``; a name taken, or a name or header that cannot work, is refused."""
    if not isinstance(provider, Provider):
        raise TypeError(f"{provider!r} is not a webhook Provider")
    name = provider.name
    if not _NAME.match(name):
        raise ValueError(f"webhook provider name {name!r} must match {_NAME.pattern}")
    if name in _REGISTRY:
        raise ValueError(f"webhook provider {name!r} is already registered")
    for header in (provider.signature_header, *provider.bypass_headers):
        if not _HEADER.match(header):
            raise ValueError(f"{name}: {header!r} is not a lower-case header name")
    _REGISTRY[name] = provider
    return provider


def unregister(name: str) -> None:
    """Remove a provider (tests that registered one)."""
    _REGISTRY.pop(name, None)


def find(name: str) -> Provider | None:
    return _REGISTRY.get(name)


def get(name: str) -> Provider:
    provider = _REGISTRY.get(name)
    if provider is None:
        raise ValueError(f"unknown webhook provider {name!r}")
    return provider


def providers() -> tuple[Provider, ...]:
    """Every provider, in the order users read them (``Provider.order``, then name)."""
    return tuple(sorted(_REGISTRY.values(), key=lambda p: (p.order, p.name)))


def names() -> tuple[str, ...]:
    return tuple(p.name for p in providers())


def hit_ids() -> frozenset[str]:
    """The built-in hit ids of every provider's webhook check."""
    return frozenset(i for p in providers() for i in p.hit_ids)


def cache_bypass_headers() -> frozenset[str]:
    """Headers that mark a signed delivery: a client never caches a request carrying one."""
    return frozenset(h for p in providers() for h in (p.signature_header, *p.bypass_headers))


def never_logged_headers() -> tuple[str, ...]:
    """Prefixes of header names the decision log never writes: each provider's family."""
    return tuple(dict.fromkeys(p.header_family for p in providers()))


def sign(
    provider: str,
    secret: str | bytes,
    raw: bytes,
    *,
    timestamp: int,
    url: str | None = None,
    form_pairs: Sequence[tuple[str, str]] = (),
) -> dict[str, str]:
    """Headers ``provider`` would send with ``raw`` (tests, examples and the demo use this)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return get(provider).sign(key, Outgoing(raw, timestamp, url, form_pairs))


for _module in submodules(__name__, __path__):
    register(_module.PROVIDER)
