"""Hot reload of a policy file: watch, debounce, compile off the request path, swap one reference.

``PolicyHotReloader`` is the server's ``PolicySource`` and is usable on its own::

    reloader = PolicyHotReloader("policy.yaml", on_error=alert)
    reloader.start()                  # loads once (raises InvalidPolicy), then watches
    decision = evaluate(reloader.current(), ctx)
    reloader.stop()

What is watched: the directory of the policy file and of every file the loaded policy
references (``CompiledPolicy.files``), including where symlinks point. A change to an entry
those files resolve through (the file, a symlink on the way such as ConfigMap's ``..data``, a
directory on the way) wakes the reloader: in-place write, write-to-temp-then-rename, delete and
recreate, the Kubernetes ConfigMap ``..data`` symlink swap. Other entries in those directories
(a log file, an editor's swap file) are ignored, so their writes never postpone a reload.
After ``debounce_ms`` of quiet it hashes the *resolved* content of the tracked files and
reloads only if that hash changed, so spurious events (touch, our own reads) never count.

A reload runs on the reloader's worker thread: parse, validate and compile completely, then
assign ``self._policy`` once. A check in flight keeps the policy object it already read. An
invalid policy is refused: the previous policy stays, the problems are logged with file, path
and reason, kept in ``last_error`` / ``last_problems``, and ``on_error`` fires.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from .._exceptions import InvalidPolicy, PolicyProblem

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver, ObservedWatch

    from . import CompiledPolicy

log = logging.getLogger("extauthz.reload")  # the name operators filter on (docs)

DEFAULT_DEBOUNCE_MS = 500
# A directory that never stops changing (a log file next to the policy) must not postpone
# a reload forever: after this many debounce periods the reloader checks anyway.
MAX_WAIT_DEBOUNCES = 10

# Everything except opened / closed-without-write: our own reads must not wake us up.
_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileClosedEvent,
    FileAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
]

ReloadStatus = Literal["reloaded", "unchanged", "failed"]


class _Loader(Protocol):
    def __call__(self, path: Path, /) -> CompiledPolicy: ...


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What one reload attempt did; ``version`` is the active policy's after the attempt."""

    status: ReloadStatus
    version: str | None
    duration_s: float
    problems: tuple[PolicyProblem, ...] = ()


@dataclass(frozen=True, slots=True)
class ReloadStats:
    reloads: int  # successful reloads after the first load
    failures: int  # refused policies (invalid, unreadable, missing)
    skipped: int  # wake-ups whose content hash had not changed
    events: int  # file-system events about the tracked files (other entries are ignored)


class PolicyHotReloader:
    """Keeps the last good policy of ``path`` current; see the module docstring."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        debounce_ms: int = DEFAULT_DEBOUNCE_MS,
        loader: _Loader | None = None,
        reload_loader: _Loader | None = None,
        on_reload: Callable[[CompiledPolicy], Any] | None = None,
        on_error: Callable[[InvalidPolicy], Any] | None = None,
        initial: CompiledPolicy | None = None,
    ) -> None:
        if debounce_ms < 0:
            raise ValueError("debounce_ms must not be negative")
        if loader is None:
            from . import load_policy

            loader = load_policy
        self.path = Path(os.path.abspath(path))
        self.debounce_s = debounce_ms / 1000
        self._loader = loader
        # reloads (not the first load): ``serve`` compiles them in a child process
        # (``policy._child``), so that the work never holds the serving threads' GIL
        self._reload_loader = reload_loader or loader
        self._on_reload = on_reload
        self._on_error = on_error
        self._policy: CompiledPolicy | None = initial
        self._tracked: tuple[Path, ...] = self._tracked_files(initial)
        self._seen_hash: str | None = self._content_hash(self._tracked) if initial else None
        self.last_error: str | None = None
        self.last_problems: tuple[PolicyProblem, ...] = ()
        self.last_error_at: float | None = None
        self.last_reload_at: float | None = initial.loaded_at if initial else None
        self._reloads = self._failures = self._skipped = self._events = 0
        self._reload_lock = threading.Lock()  # one attempt at a time (worker or reload_now)
        self._cond = threading.Condition()
        self._first_event: float | None = None
        self._last_event = 0.0
        self._forced = False
        self._stopping = False
        self._observer: BaseObserver | None = None
        self._watches: dict[Path, ObservedWatch] = {}
        # What the tracked files resolve through (see ``_resolution_paths``); other entries'
        # events are ignored. Replaced whole on each sync, read on watchdog's thread.
        self._relevant: frozenset[str] = frozenset()
        self._worker: threading.Thread | None = None

    # -- PolicySource -------------------------------------------------------------------------

    def current(self) -> CompiledPolicy:
        """The active policy: one attribute read, safe from any thread."""
        policy = self._policy
        if policy is None:
            raise RuntimeError("PolicyHotReloader: no policy loaded yet; call start() first")
        return policy

    @property
    def stats(self) -> ReloadStats:
        return ReloadStats(self._reloads, self._failures, self._skipped, self._events)

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, *, watch: bool = True) -> PolicyHotReloader:
        """Load the policy (raises ``InvalidPolicy`` if there is none to run) and start watching.

        ``watch=False`` loads and starts only the worker: reloads then happen on
        ``reload_now()`` / ``request_reload()`` (SIGHUP) alone.
        """
        if self.running:
            return self
        if self._policy is None:
            self._install(*self._load_hashed(self._loader))
        self._stopping = False
        if watch:
            self._observer = Observer()
            self._observer.daemon = True
            self._sync_watches()
            self._observer.start()
        self._worker = threading.Thread(
            target=self._run, name="contractshield-policy-reload", daemon=True
        )
        self._worker.start()
        if watch:
            log.info("watching %s for policy changes (debounce %d ms)", self.path, self.debounce_ms)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching; ``current()`` keeps answering with the last good policy."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None
        self._watches.clear()
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None

    def __enter__(self) -> PolicyHotReloader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def debounce_ms(self) -> int:
        return round(self.debounce_s * 1000)

    # -- reloading ----------------------------------------------------------------------------

    def reload_now(self, *, force: bool = True) -> ReloadResult:
        """Reload in the calling thread, now (SIGHUP). ``force`` reloads even if unchanged."""
        return self._reload(force=force)

    def request_reload(self) -> None:
        """Ask the worker thread for a forced reload and return at once (any thread, any loop)."""
        with self._cond:
            self._forced = True
            self._cond.notify_all()

    def _notify(self, event: FileSystemEvent) -> None:
        """Called on watchdog's thread: note the time of an event that concerns us."""
        if not self._concerns_us(event):
            return
        now = time.monotonic()
        with self._cond:
            self._events += 1
            self._last_event = now
            if self._first_event is None:
                self._first_event = now
            self._cond.notify_all()

    def _run(self) -> None:
        max_wait = max(self.debounce_s * MAX_WAIT_DEBOUNCES, 1.0)
        while True:
            with self._cond:
                while not (self._stopping or self._forced or self._first_event is not None):
                    self._cond.wait()
                while not (self._stopping or self._forced):
                    assert self._first_event is not None
                    deadline = min(self._last_event + self.debounce_s, self._first_event + max_wait)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._stopping:
                    return
                force, self._forced = self._forced, False
                self._first_event = None
            try:
                self._reload(force=force)
            except Exception:  # never let the watcher die
                log.exception("policy reload crashed; keeping the current policy")

    def _reload(self, *, force: bool) -> ReloadResult:
        with self._reload_lock:
            started = time.perf_counter()
            content_hash = self._content_hash(self._tracked or (self.path,))
            if not force and content_hash == self._seen_hash:
                self._skipped += 1
                if self._observer is not None:  # a symlink may point elsewhere, same content
                    self._sync_watches()
                log.debug("policy files unchanged (%s); not reloading", content_hash[:12])
                return ReloadResult("unchanged", self._version(), time.perf_counter() - started)
            self._seen_hash = content_hash
            try:
                policy, content_hash = self._load_hashed(self._reload_loader, content_hash)
            except InvalidPolicy as exc:
                return self._refuse(exc, started)
            except Exception as exc:  # unreadable, missing, or a loader bug: same answer
                problem = PolicyProblem(str(self.path), "", f"{type(exc).__name__}: {exc}")
                return self._refuse(InvalidPolicy([problem]), started)
            self._install(policy, content_hash)
            duration = time.perf_counter() - started
            log.info(
                "policy reloaded: %s version %s (%d routes) in %.1f ms",
                self.path,
                policy.version,
                len(getattr(policy, "route_ids", ())),
                duration * 1000,
            )
            self._call(self._on_reload, policy)
            self._reloads += 1  # counted last: a caller who sees it also sees the callback done
            return ReloadResult("reloaded", policy.version, duration)

    def _load_hashed(
        self, loader: _Loader, before: str | None = None
    ) -> tuple[CompiledPolicy, str]:
        """Load, and the content hash to remember for it.

        The hash taken *before* loading is kept when the file set did not change, so an edit
        racing with the load still differs from it and triggers one more reload later.
        """
        tracked = self._tracked or (self.path,)
        if before is None:
            before = self._content_hash(tracked)
        policy = loader(self.path)
        files = self._tracked_files(policy)
        return policy, before if files == tracked else self._content_hash(files)

    def _install(self, policy: CompiledPolicy, content_hash: str) -> None:
        for warning in getattr(policy, "warnings", ()):
            log.warning("policy %s: %s", self.path, warning)
        self._tracked = self._tracked_files(policy)
        self._seen_hash = content_hash
        self.last_reload_at = getattr(policy, "loaded_at", None) or time.time()
        self.last_error = None
        self.last_problems = ()
        # The one swap, last: a reader that sees the new policy also sees the error cleared.
        self._policy = policy
        if self._observer is not None:
            self._sync_watches()

    def _refuse(self, exc: InvalidPolicy, started: float) -> ReloadResult:
        self.last_problems = exc.errors or (PolicyProblem(str(self.path), "", str(exc)),)
        self.last_error = "; ".join(str(p) for p in self.last_problems)
        self.last_error_at = time.time()
        version = self._version()
        for problem in self.last_problems:
            log.error(
                "policy reload refused, keeping version %s: %s: %s: %s",
                version,
                problem.file,
                problem.path or "<root>",
                problem.reason,
                extra={"file": problem.file, "policy_path": problem.path, "reason": problem.reason},
            )
        # Watch where the broken policy points, so a fix there (a new schema) is seen too.
        if self._observer is not None:
            self._sync_watches(Path(p.file) for p in self.last_problems if p.file)
        self._call(self._on_error, exc)
        self._failures += 1
        return ReloadResult("failed", version, time.perf_counter() - started, self.last_problems)

    def _call(self, callback: Callable[[Any], Any] | None, arg: Any) -> None:
        if callback is None:
            return
        try:
            callback(arg)
        except Exception:
            log.exception("policy reload callback %r failed", callback)

    def _version(self) -> str | None:
        return self._policy.version if self._policy is not None else None

    # -- watching -----------------------------------------------------------------------------

    def _tracked_files(self, policy: CompiledPolicy | None) -> tuple[Path, ...]:
        """The policy path as given, then each referenced file, seen through the same symlinks.

        The loader reports resolved paths (``..2026_xx/item.json`` under a ConfigMap). Reading
        ``<policy dir>/item.json`` instead follows ``..data`` at read time, so an update that
        swaps in identical content hashes the same and is not counted as a reload.
        """
        files = [self.path]
        real_dir = Path(os.path.realpath(self.path)).parent
        for f in getattr(policy, "files", ()) if policy is not None else ():
            p = Path(os.path.abspath(f))
            with contextlib.suppress(ValueError, OSError):
                alias = self.path.parent / p.relative_to(real_dir)
                if os.path.samefile(alias, p):
                    p = alias
            if p not in files:
                files.append(p)
        return tuple(files)

    @staticmethod
    def _content_hash(files: Iterable[Path]) -> str:
        """sha256 over each file's resolved content (symlinks followed); missing is a value."""
        digest = hashlib.sha256()
        for path in files:
            try:
                data = b"+" + path.read_bytes()
            except OSError as exc:
                data = b"!" + str(exc.errno).encode()  # missing/unreadable is a state too
            digest.update(len(data).to_bytes(8, "big") + data)
        return digest.hexdigest()

    def _concerns_us(self, event: FileSystemEvent) -> bool:
        """An event about an entry the tracked files resolve through.

        A watched directory's own ``DirModifiedEvent`` only accompanies an event about one of
        its entries (which is judged by itself), so it is not one.
        """
        paths = [os.fsdecode(event.src_path)]
        if isinstance(event, DirModifiedEvent) and Path(paths[0]) in self._watches:
            return False
        if event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        relevant = self._relevant
        for path in paths:
            head, name = os.path.split(path)
            if os.path.join(os.path.realpath(head), name) in relevant:
                return True
        return False

    def _sync_watches(self, extra: Iterable[Path] = ()) -> None:
        files = (*self._tracked, *extra)
        self._relevant = frozenset().union(*(_resolution_paths(f) for f in files))
        wanted: set[Path] = set()
        for f in files:
            for directory in (f.parent, Path(os.path.realpath(f)).parent):
                stable = _stable_dir(directory)
                if stable.is_dir():
                    wanted.add(stable)
        observer = self._observer
        if observer is None:
            return
        handler = _Handler(self._notify)
        for directory in wanted - self._watches.keys():
            try:
                self._watches[directory] = observer.schedule(
                    handler, str(directory), recursive=False, event_filter=_EVENTS
                )
                log.debug("watching directory %s", directory)
            except OSError as exc:
                log.warning("cannot watch %s: %s", directory, exc)
        for directory in self._watches.keys() - wanted - {_stable_dir(self.path.parent)}:
            watch = self._watches.pop(directory)
            try:
                observer.unschedule(watch)
            except Exception:  # the directory may be gone already
                log.debug("unschedule %s failed", directory, exc_info=True)


def _resolution_paths(path: Path) -> set[str]:
    """Every entry resolving ``path`` goes through: each directory, each symlink, the file.

    Each is named by its real parent directory and its own name, as an event in a watched
    directory names it once that directory is resolved (``_concerns_us``). A missing entry
    ends the walk's symlink following but is still named: creating it is a change.
    """
    pending = list(Path(os.path.abspath(path)).parts)
    current = pending.pop(0)  # the anchor, "/"
    seen = {current}
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":  # only from a relative symlink target
            current = os.path.dirname(current)
            continue
        if part == ".":
            continue
        candidate = os.path.join(current, part)
        seen.add(candidate)
        if hops < 40 and os.path.islink(candidate):  # 40: the kernel's own limit
            hops += 1
            try:
                target = Path(os.readlink(candidate))
            except OSError:
                current = candidate
                continue
            target_parts = list(target.parts)
            if target.is_absolute():
                current = target_parts.pop(0)
            pending[:0] = target_parts
            continue
        current = candidate
    return seen


def _stable_dir(directory: Path) -> Path:
    """Cut at ConfigMap-internal ``..2026_xx`` dirs (replaced on every update): watch the mount."""
    parts = directory.parts
    for i, part in enumerate(parts):
        if part.startswith("..") and part != "..":
            return Path(*parts[:i])
    return directory


class _Handler(FileSystemEventHandler):
    __slots__ = ("_notify",)

    def __init__(self, notify: Callable[[FileSystemEvent], None]) -> None:
        self._notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._notify(event)
