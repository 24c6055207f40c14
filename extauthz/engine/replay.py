"""Webhook replay stores: a ``claim`` succeeds once per key within its TTL.

``claim`` raises ``ReplayStoreUnavailable`` when the store cannot answer; the pipeline then
fails closed (or open, when asked). The in-memory store is for one process: bounded (oldest
entries are evicted first, which re-opens their replay window — size it above the events
received per TTL) and thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, runtime_checkable


@runtime_checkable
class ReplayStore(Protocol):
    def claim(self, key: str, ttl_seconds: int) -> bool:
        """Record ``key`` for ``ttl_seconds``; True when it was not already recorded."""
        ...


@runtime_checkable
class AsyncReplayStore(Protocol):
    async def claim(self, key: str, ttl_seconds: int) -> bool:
        """Async twin of ``ReplayStore.claim``."""
        ...


DEFAULT_MAX_ENTRIES = 100_000


class InMemoryReplayStore:
    """Bounded, TTL'd, thread-safe replay store for a single process."""

    __slots__ = ("_clock", "_entries", "_lock", "max_entries")

    def __init__(
        self, *, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._clock = clock

    def claim(self, key: str, ttl_seconds: int) -> bool:
        now = self._clock()
        with self._lock:
            expires = self._entries.get(key)
            if expires is not None and expires > now:
                return False
            self._entries[key] = now + max(1, ttl_seconds)
            self._entries.move_to_end(key)
            self._sweep(now)
            return True

    def _sweep(self, now: float) -> None:
        entries = self._entries
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
        # Drop expired entries at the old end (cheap, amortised).
        for _ in range(8):
            if not entries:
                break
            key, expires = next(iter(entries.items()))
            if expires > now:
                break
            del entries[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
