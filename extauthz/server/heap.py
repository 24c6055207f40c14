"""Keep what a policy load builds out of the cyclic garbage collector, in a serving process.

After start-up the heap holds ~70k tracked objects (the compiled policy, its JSON Schemas and
CEL programs, the imported modules). A full (generation 2) collection walks all of them: on the
demo policy that is a 30-40 ms pause of the event loop, taken every few thousand checks under
load, i.e. straight into the p99. None of it becomes garbage while it serves, so it is moved to
the permanent generation (``gc.freeze``, as Instagram and gunicorn's preload do). A reload
unfreezes, collects once (the old policy's cycles are freed; one pause per reload, off the
check path's steady state) and freezes the new heap.

Only ``serve`` (the process that owns the heap) turns this on: a library user's process, or a
test run, keeps the collector as it is.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_enabled = False


def freeze() -> None:
    """Collect once, then freeze everything alive; later calls re-freeze (after a reload)."""
    global _enabled
    with _lock:
        _enabled = True
        _refreeze()


def after_reload() -> None:
    """Called when a new policy is installed: re-freeze if this process froze its heap."""
    with _lock:
        if _enabled:
            _refreeze()


def disable() -> None:
    """Give every frozen object back to the collector (at shutdown)."""
    global _enabled
    with _lock:
        _enabled = False
        gc.unfreeze()


def _refreeze() -> None:
    gc.unfreeze()
    gc.collect()
    gc.freeze()
