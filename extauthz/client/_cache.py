"""The decision cache: a bounded TTL cache whose key covers every input the PDP can read.

Caching must never change a decision, so the key is a digest over the method, the path with
its query, every header except the configured per-request tracing headers, the body bytes,
the identity (the whole JWT payload sent: subject, tenant, scopes, claims), the client ip,
host, scheme, context extensions, and the policy version last seen. Only answers the server
marks as cacheable (see ``_response``) are stored. The key holds no request data, only a
digest, so tokens and bodies do not linger in memory.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
import time
from collections.abc import Callable
from operator import itemgetter

from cachetools import TTLCache

from ..decision import Decision
from ..webhooks import cache_bypass_headers as webhook_bypass_headers
from ._request import CheckInput

# Per-request tracing headers: different on every request, never read by a sane policy.
DEFAULT_CACHE_IGNORED_HEADERS: frozenset[str] = frozenset(
    {
        "x-request-id",
        "traceparent",
        "tracestate",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "x-amzn-trace-id",
        "x-cloud-trace-context",
        "uber-trace-id",
    }
)
# Signed webhooks are one-shot: a replay is byte-identical, so a cached ALLOW would bypass the
# server's replay protection. Requests carrying these headers are never looked up or stored
# (belt and braces: the server also marks such decisions "no-store"): those of every provider
# the server verifies (``extauthz.webhooks``), and those of other common senders, which a
# policy may check in CEL.
DEFAULT_CACHE_BYPASS_HEADERS: frozenset[str] = webhook_bypass_headers() | frozenset(
    {"svix-signature", "webhook-signature", "x-shopify-hmac-sha256"}
)
_KEY_FORMAT = 1
_name = itemgetter(0)
_PICKLE_PROTOCOL = 5


def cache_key(inp: CheckInput, policy_version: str | None, ignored: frozenset[str]) -> bytes:
    """A 256-bit BLAKE2b digest of the fields, encoded with pickle (unambiguous: the encoding
    decodes back to the same values, and it is twice as fast as ``repr``), then the body."""
    headers = [h for h in inp.headers if h[0] not in ignored] if ignored else inp.headers
    body = inp.body
    material = (
        _KEY_FORMAT,
        policy_version,
        inp.method,
        inp.path,
        inp.host,
        inp.scheme,
        headers,
        -1 if body is None else len(body),
        inp.identity_key,
        inp.client_ip,
        inp.context_extensions,
    )
    h = hashlib.blake2b(pickle.dumps(material, _PICKLE_PROTOCOL), digest_size=32)
    if body:
        h.update(body)
    return h.digest()


class DecisionCache:
    """Thread-safe wrapper around ``cachetools.TTLCache`` (which is not)."""

    __slots__ = ("_cache", "_lock", "bypass_headers", "hits", "ignored_headers", "misses")

    def __init__(
        self,
        *,
        max_size: int,
        ttl_seconds: float,
        ignored_headers: frozenset[str],
        bypass_headers: frozenset[str] = DEFAULT_CACHE_BYPASS_HEADERS,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache: TTLCache[bytes, Decision] = TTLCache(max_size, ttl_seconds, timer=timer)
        self._lock = threading.Lock()
        self.ignored_headers = ignored_headers
        self.bypass_headers = bypass_headers
        self.hits = self.misses = 0  # counted by ``get``, under its lock

    def key(self, inp: CheckInput, policy_version: str | None) -> bytes | None:
        """The key, or None when this request must never be cached."""
        if not self.bypass_headers.isdisjoint(map(_name, inp.headers)):
            return None
        return cache_key(inp, policy_version, self.ignored_headers)

    def get(self, key: bytes) -> Decision | None:
        # acquire/release, not ``with``: the context-manager protocol costs ~0.25 µs, a
        # fortieth of a cache hit
        self._lock.acquire()
        try:
            hit = self._cache[key]  # ``TTLCache.get`` checks expiry twice (``in``, then ``[]``)
        except KeyError:
            self.misses += 1
            return None
        else:
            self.hits += 1
            return hit
        finally:
            self._lock.release()

    def put(self, key: bytes, decision: Decision) -> None:
        with self._lock:
            self._cache[key] = decision

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def __len__(self) -> int:
        with self._lock:
            self._cache.expire()
            return len(self._cache)
