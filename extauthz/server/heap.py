"""Keep what a policy load builds out of the cyclic garbage collector, in a serving process.

After start-up the heap holds ~70k tracked objects (the compiled policy, its JSON Schemas and
CEL programs, the imported modules). A full (generation 2) collection walks all of them: on the
demo policy that is a 30-40 ms pause of the event loop, taken every few thousand checks under
load, i.e. straight into the p99. None of it becomes garbage while it serves, so it is moved to
the permanent generation (``gc.freeze``, as Instagram and gunicorn's preload do). A reload
collects only what was made since the last freeze and freezes the new policy too; the old one
is freed by reference counting (it holds no cycles), so a reload costs no full collection
pause; then the freed memory goes back to the system (``trim``).

Only ``serve`` (the process that owns the heap) turns this on: a library user's process, or a
test run, keeps the collector as it is.
"""

from __future__ import annotations

import ctypes
import gc
import threading
from typing import Any

_lock = threading.Lock()
_enabled = False


def freeze() -> None:
    """Collect once, then freeze everything alive; later calls re-freeze (after a reload)."""
    global _enabled
    with _lock:
        _enabled = True
        _refreeze()
        trim()


def after_reload() -> None:
    """Called when a new policy is installed: freeze it too, if this process froze its heap.

    Only the two youngest generations are collected (what was made in the last moments), never
    the frozen heap: that full collection walked every object with the GIL held, 80-130 ms
    here with a Stripe-sized policy (20-40 ms on a quiet machine with the demo's), the slowest
    checks of a reload. Freed memory goes back to the system two seconds later (``trim``). The old policy needs none: it holds no
    reference cycles (its generated validators break theirs when dropped,
    ``engine.contract._Release``), so reference counting frees it, frozen or not, when the last
    check using it ends. What it costs: a cycle that was alive at a freeze and dies later (an
    object of a connection open during a reload) stays until the process ends.
    """
    with _lock:
        if _enabled:
            gc.collect(1)  # the youngest objects only (~1 ms; the whole new policy: 5-27 ms)
            gc.freeze()
            # once the old policy is gone too (a check still using it ends within
            # CHECK_DEADLINE_MS): until then its memory is not free to give back
            timer = threading.Timer(2.0, trim)
            timer.daemon = True
            timer.start()


def disable() -> None:
    """Give every frozen object back to the collector (at shutdown)."""
    global _enabled
    with _lock:
        _enabled = False
        gc.unfreeze()


def trim() -> None:
    """Give the C allocator's free memory back to the system (glibc's ``malloc_trim``).

    A reload's transient buffers (the pickled policy from ``policy._child``, ~9 MB for a
    Stripe-sized one) and the previous policy, once freed, stay in the process's heap: glibc
    raises its mmap threshold after the first large free, so later large blocks come from the
    heap, which it does not shrink on its own. Without this, RSS rose by ~25 % over the first
    reloads of a Stripe-sized policy before levelling off; with it, it stays flat. ctypes
    releases the GIL for the call. A no-op where there is no glibc.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


def _find_malloc_trim() -> Any:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()


def _refreeze() -> None:
    gc.unfreeze()
    gc.collect()
    gc.freeze()
