"""Worker processes: ``extauthz serve --workers N`` runs N servers under one supervisor.

One Python interpreter decides on one core; N workers (each its own process and event loop)
let a node's throughput grow with its cores. The supervisor serves nothing itself::

    supervisor ── compiles the policy once (refuses a bad one), watches it (HOT_RELOAD)
      │             SIGHUP / a good edit → SIGHUP to every worker; a refused edit: logged once
      │             SIGTERM → SIGTERM to every worker (each drains), then exits
      ├─ worker 0   gRPC on UNIX_SOCKET's ``<stem>.0<suffix>``, TCP ports with SO_REUSEPORT
      └─ worker 1   ...                  a worker that dies is restarted with back-off

Workers share a directory (``EXTAUTHZ_WORKER_DIR``): each writes its metrics exposition and a
small status file there once a second and at drain; ``/metrics`` and ``/health`` on any worker
read them all, so a scrape sees one target. A dead worker's counters are kept (as a
``retired-*`` file), so totals survive a restart; gauges come from live workers only.

Unix sockets: one per worker. grpcio binds a Unix socket only by path (no listening socket
from a file descriptor) and Linux does not balance AF_UNIX sockets with SO_REUSEPORT, so a
shared listening socket is not possible for gRPC here; Envoy lists each socket as an endpoint
of the PDP cluster (``extauthz envoy-config --workers N``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._exceptions import InvalidConfig
from .config import SETTINGS, UNIX_SOCKETS, ServerConfig
from .worker_plan import (  # the sizing and naming, re-exported (envoy-config, devstack)
    parse_workers,  # noqa: F401
    usable_cores,  # noqa: F401
    worker_socket,
    worker_sockets,  # noqa: F401
)

log = logging.getLogger("extauthz.server")

WORKER_INDEX_ENV = "EXTAUTHZ_WORKER_INDEX"
WORKER_DIR_ENV = "EXTAUTHZ_WORKER_DIR"
PUBLISH_INTERVAL_SECONDS = 1.0  # how far behind a sibling's figures in /metrics can be
BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 10.0
STABLE_SECONDS = 10.0  # a worker that lived this long resets the back-off
POLL_SECONDS = 0.05
SUMMED_GAUGES = frozenset({"contractshield_checks_in_flight"})
RESTARTS = "contractshield_worker_restarts"


# --- inside a worker -----------------------------------------------------------------------
@dataclass(slots=True)
class WorkerRole:
    """This process is worker ``index`` of a supervisor sharing ``directory``."""

    index: int
    directory: Path

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> WorkerRole | None:
        env = os.environ if environ is None else environ
        if WORKER_INDEX_ENV not in env or WORKER_DIR_ENV not in env:
            return None
        return cls(int(env[WORKER_INDEX_ENV]), Path(env[WORKER_DIR_ENV]))

    @property
    def name(self) -> str:
        return str(self.index)

    def _file(self, suffix: str) -> Path:
        return self.directory / f"worker-{self.index}.{suffix}"

    def retire_predecessor(self) -> None:
        """Keep a dead predecessor's last counters in the totals (renamed, never overwritten)."""
        old = self._file("prom")
        if old.exists():
            stamp = time.time_ns()
            with contextlib.suppress(FileNotFoundError):
                old.rename(self.directory / f"retired-{self.index}-{stamp}.prom")

    def publish(self, state: Any, exposition: bytes) -> None:
        """Write this worker's figures and status where its siblings read them (atomically)."""
        try:
            policy = state.policy_source.current()
            version, loaded_at = policy.version, policy.loaded_at
        except Exception:  # no policy: /health says so; the status still names the worker
            version, loaded_at = None, None
        status = {
            "worker": self.index,
            "pid": os.getpid(),
            "policyVersion": version,
            "loadedAt": loaded_at,
            "draining": state.draining,
        }
        _write_atomic(self._file("prom"), exposition)
        _write_atomic(self._file("json"), json.dumps(status).encode())

    def statuses(self) -> list[dict[str, Any]]:
        """Every live worker's status, by index (``/health``'s ``workers``)."""
        found = []
        for path in sorted(self.directory.glob("worker-*.json")):
            with contextlib.suppress(OSError, ValueError):
                found.append(json.loads(path.read_text()))
        return sorted(found, key=lambda s: s.get("worker", 0))

    def exposition(self, own: bytes) -> bytes:
        """The whole server's ``/metrics``: this worker's fresh figures plus every sibling's."""
        _write_atomic(self._file("prom"), own)
        return merge_expositions(self.directory)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM (a drain) when the supervisor dies, even by SIGKILL."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    # A SIGHUP before ``serve`` installs its handler would end the worker; the supervisor
    # checks the version a new worker reports instead (``Supervisor._tend``).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def merge_expositions(directory: Path) -> bytes:
    """One exposition from every worker's: counters and histograms summed (retired workers
    included, so totals survive restarts), ``_created`` the earliest, in-flight summed, other
    gauges and infos per live worker (a ``worker`` label), the supervisor's own as they are."""
    from prometheus_client.metrics_core import Metric
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for path in sorted(directory.glob("*.prom")):
        kind = path.name.split("-", 1)[0].split(".", 1)[0]  # worker | retired | supervisor
        label = path.stem.split("-")[1] if kind != "supervisor" else ""
        try:
            text = path.read_text()
        except OSError:
            continue
        for fam in text_string_to_metric_families(text):
            # ``x_created`` (a counter's creation time) parses as a gauge family of its own.
            created = fam.name.endswith("_created")
            cumulative = created or fam.type in ("counter", "histogram", "summary")
            if kind == "retired" and not cumulative:
                continue
            per_worker = kind == "worker" and not cumulative and fam.name not in SUMMED_GAUGES
            if fam.name not in families:
                families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                values[fam.name] = {}
            merged = values[fam.name]
            for s in fam.samples:
                labels = dict(s.labels)
                if per_worker:
                    labels["worker"] = label
                key = (s.name, tuple(labels.items()))
                if key not in merged:
                    merged[key] = s.value
                elif s.name.endswith("_created"):
                    merged[key] = min(merged[key], s.value)
                else:
                    merged[key] += s.value
    lines: list[bytes] = []
    from prometheus_client import CollectorRegistry, generate_latest

    class _Merged:
        def collect(self) -> Iterable[Metric]:
            for name, fam in families.items():
                for (sample, labels), value in values[name].items():
                    fam.add_sample(sample, dict(labels), value)
                yield fam

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    lines.append(generate_latest(registry))
    return b"".join(lines)


# --- the supervisor ------------------------------------------------------------------------
@dataclass(slots=True)
class _Child:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0  # consecutive short lives, for the back-off
    restart_at: float | None = None
    restarts: int = 0
    ready: bool = False


@dataclass(slots=True)
class Supervisor:
    """Starts ``config.workers`` workers, keeps them running, forwards SIGTERM and SIGHUP."""

    config: ServerConfig
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="extauthz-")))
    children: list[_Child] = field(default_factory=list)
    _stopping: int = 0  # SIGTERM/SIGINT seen
    _hup: bool = False
    _reloaded: bool = False
    _announced: bool = False
    _reloader: Any = None

    def check_ports(self) -> None:
        """Refuse a TCP port someone else holds (workers bind with SO_REUSEPORT, so would
        otherwise join another server's group)."""
        c = self.config
        for name, host, port in (
            ("GRPC_PORT", c.grpc_host, c.grpc_port),
            ("HTTP_PORT", c.http_host, c.http_port),
        ):
            if not port:
                continue
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((host, port))
                except OSError as exc:
                    raise InvalidConfig(
                        f"{name}: cannot listen on {host}:{port}: {exc.strerror or exc}"
                    ) from exc

    def worker_env(self, index: int) -> dict[str, str]:
        """The worker's settings: every resolved setting as its environment variable."""
        env = dict(os.environ)
        for s in SETTINGS:
            value = getattr(self.config, s.name)
            if value is None:
                env.pop(s.env, None)
            else:
                env[s.env] = s.to_env(value)
        for s in UNIX_SOCKETS:  # one socket per worker
            path = getattr(self.config, s.name)
            if path:
                env[s.env] = worker_socket(path, index)
        env["WORKERS"] = "1"
        env["HOT_RELOAD"] = "false"  # the supervisor watches, and logs a refusal once
        env[WORKER_INDEX_ENV] = str(index)
        env[WORKER_DIR_ENV] = os.fspath(self.directory)
        return env

    def spawn(self, child: _Child) -> None:
        (self.directory / f"worker-{child.index}.json").unlink(missing_ok=True)
        child.process = subprocess.Popen(
            [sys.executable, "-m", "extauthz", "serve"],
            env=self.worker_env(child.index),
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        child.started_at = time.monotonic()
        child.ready = False
        child.restart_at = None
        log.info("worker %d started (pid %d)", child.index, child.process.pid)

    def publish(self) -> None:
        """The supervisor's own metrics: restarts per worker, and how many workers there are."""
        lines = [
            f"# HELP {RESTARTS}_total Worker processes restarted after dying, by worker.",
            f"# TYPE {RESTARTS}_total counter",
        ]
        lines += [f'{RESTARTS}_total{{worker="{c.index}"}} {c.restarts}' for c in self.children]
        lines += [
            "# HELP contractshield_workers Worker processes the supervisor keeps running.",
            "# TYPE contractshield_workers gauge",
            f"contractshield_workers {len(self.children)}",
        ]
        _write_atomic(self.directory / "supervisor.prom", ("\n".join(lines) + "\n").encode())

    def _on_stop(self, signum: int, frame: Any) -> None:
        self._stopping += 1
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signum)

    def _on_hup(self, signum: int, frame: Any) -> None:
        self._hup = True

    def run(self) -> int:
        from ..policy.reload import PolicyHotReloader
        from ..policy.source import policy_loader

        assert self.config.policy_path is not None
        self.check_ports()
        reloader = PolicyHotReloader(
            self.config.policy_path,
            loader=policy_loader(self.config.policy_base_dir, self.config.max_document_bytes),
            debounce_ms=self.config.reload_debounce_ms,
            on_reload=lambda policy: setattr(self, "_reloaded", True),
        ).start(watch=self.config.hot_reload)  # raises InvalidPolicy: refused before any worker
        self._reloader = reloader
        self._reloaded = False
        self.children = [_Child(i) for i in range(self.config.workers)]
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        try:
            self.publish()
            for child in self.children:
                self.spawn(child)
            return self._loop(reloader)
        finally:
            reloader.stop()
            for child in self.children:  # never leave a worker behind
                if child.process is not None and child.process.poll() is None:
                    child.process.kill()
                    child.process.wait()
            shutil.rmtree(self.directory, ignore_errors=True)

    def _loop(self, reloader: Any) -> int:
        deadline: float | None = None
        while True:
            now = time.monotonic()
            if self._stopping:
                if deadline is None:
                    deadline = now + self.config.grace_seconds + 5.0
                    log.info("supervisor: draining %d workers", len(self.children))
                alive = [c for c in self.children if c.process and c.process.poll() is None]
                if not alive:
                    log.info("supervisor: every worker stopped")
                    return 0
                if now > deadline:
                    log.warning("supervisor: %d workers past the grace; killing", len(alive))
                    return 1
                time.sleep(POLL_SECONDS)
                continue
            if self._hup:
                self._hup = False
                if reloader.reload_now().status == "reloaded":
                    self._reloaded = True
            if self._reloaded:  # a good policy: every worker loads it (a refusal stays here)
                self._reloaded = False
                self._broadcast(signal.SIGHUP)
            for child in self.children:
                code = self._tend(child, now)
                if code is not None:
                    return code
            if not self._announced and all(c.ready for c in self.children):
                self._announced = True
                print(
                    f"extauthz: ready (pid {os.getpid()}, {len(self.children)} workers)",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(POLL_SECONDS)

    def _tend(self, child: _Child, now: float) -> int | None:
        """Notice readiness and deaths; restart with back-off. An exit code ends the run."""
        process = child.process
        if child.restart_at is not None:
            if now >= child.restart_at:
                # The replacement reads the policy file: if it changed unannounced (hot reload
                # off, no SIGHUP), every worker moves to it, so all run one version.
                if self._reloader.reload_now(force=False).status == "reloaded":
                    self._reloaded = True
                self.spawn(child)
            return None
        assert process is not None
        code = process.poll()
        if code is None:
            status = self.directory / f"worker-{child.index}.json"
            if not child.ready and status.exists():
                child.ready = True
                self._catch_up(child, status)
            return None
        if not self._announced and not child.ready:
            log.error("worker %d exited with %d while starting; stopping", child.index, code)
            self._on_stop(signal.SIGTERM, None)
            return code or 1
        lived = now - child.started_at
        child.failures = 0 if lived >= STABLE_SECONDS else child.failures + 1
        delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** max(0, child.failures - 1))
        child.restarts += 1
        child.restart_at = now + delay
        (self.directory / f"worker-{child.index}.json").unlink(missing_ok=True)
        self.publish()
        log.warning(
            "worker %d (pid %d) exited with %d; restarting in %.1f s",
            child.index,
            process.pid,
            code,
            delay,
        )
        return None

    def _catch_up(self, child: _Child, status: Path) -> None:
        """A new worker that loaded another version than the supervisor's reloads once."""
        with contextlib.suppress(OSError, ValueError):
            version = json.loads(status.read_text()).get("policyVersion")
            if version != self._reloader.current().version and child.process is not None:
                log.info("worker %d runs %s; reloading it", child.index, version)
                child.process.send_signal(signal.SIGHUP)

    def _broadcast(self, signum: int) -> None:
        """To every ready worker (one still starting is caught up when it reports ready)."""
        for child in self.children:
            if child.ready and child.process is not None and child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signum)
