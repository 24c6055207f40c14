"""Server lifecycle: build the state, serve gRPC (Unix socket and/or TCP) and HTTP on one
event loop, drain on SIGTERM/SIGINT.

Shutdown follows gRPC's graceful-shutdown example: health turns NOT_SERVING first (Envoy's
health checks and Kubernetes stop sending), then ``server.stop(grace)`` refuses new RPCs and
lets in-flight checks finish, then the socket file is removed. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from .._exceptions import InvalidConfig
from . import decision_log, heap, tracing, workers
from . import socket as unix_socket
from .config import ServerConfig
from .grpc_service import AuthorizationServicer
from .health import HealthWatcher
from .http_api import HttpApi
from .http_server import HttpServer
from .metrics import MeteredReplayStore, Metrics
from .state import ServerState
from .tls import TlsFiles, TlsReloader

if TYPE_CHECKING:
    from ..engine.model import CompiledPolicy

log = logging.getLogger("extauthz.server")

DRAIN_QUIET_SECONDS = 0.2  # a drain ends once no check has started for this long
DRAIN_POLL_SECONDS = 0.02
TLS_WATCH_SECONDS = 1.0  # how often the HTTP listener looks for new TLS files


# --- policy source and replay store ------------------------------------------------------
# The hot reloader (config.hot_reload, SIGHUP → state.reload) and the Redis replay store
# (config.redis_url) are chosen here. Kept small: it runs before serving.
def policy_loader(config: ServerConfig) -> Callable[[Path], CompiledPolicy]:
    """``load_policy`` with the configured base directory (``POLICY_BASE_DIR``)."""
    from ..policy import load_policy

    return functools.partial(load_policy, base_dir=config.policy_base_dir)


def build_state(config: ServerConfig) -> ServerState:
    """Load the policy (raises ``InvalidPolicy``), start hot reload, create the replay store."""
    from ..engine import InMemoryReplayStore
    from ..policy.reload import PolicyHotReloader

    if not config.policy_path:
        from .._exceptions import InvalidConfig

        raise InvalidConfig("POLICY_PATH: no policy given (--policy or POLICY_PATH)")
    metrics = Metrics()

    # The reloader is the policy source either way; with HOT_RELOAD off it watches nothing
    # and reloads only on SIGHUP (state.reload runs in an executor, off the event loop).
    def on_reload(policy: Any) -> None:
        metrics.observe_reload(True)
        metrics.observe_policy(policy)
        heap.after_reload()  # a no-op unless ``serve`` froze the heap

    reloader = PolicyHotReloader(
        config.policy_path,
        loader=policy_loader(config),
        debounce_ms=config.reload_debounce_ms,
        on_reload=on_reload,
        on_error=lambda exc: metrics.observe_reload(False),
    ).start(watch=config.hot_reload)
    replay_store: Any  # Server.start meters it and bounds its claims
    if config.redis_url:
        from ..replay_redis import RedisReplayStore

        replay_store = RedisReplayStore(config.redis_url)
        log.info("webhook replay store: redis %s, shared by every replica", replay_store.safe_url)
    else:
        replay_store = InMemoryReplayStore()
        log.warning("no REDIS_URL: webhook replay protection is per process (in-memory store)")
    state = ServerState(
        config=config,
        policy_source=reloader,
        metrics=metrics,
        replay_store=replay_store,
        reload=reloader.reload_now,
    )
    state.on_shutdown.append(reloader.stop)
    state.worker = workers.WorkerRole.from_environ()
    state.tracer = tracing.from_environment()
    if state.tracer is not None:
        log.info("tracing: OpenTelemetry spans exported over OTLP (OTEL_* variables)")
        state.on_shutdown.append(state.tracer.shutdown)
    state.decision_log = decision_log.from_config(config, metrics, traced=state.tracer is not None)
    if state.decision_log is not None:
        state.on_shutdown.append(state.decision_log.close)
    if config.redis_url:
        state.on_shutdown.append(replay_store.close)
    return state


# ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Server:
    """One running PDP: gRPC (+ health) and HTTP on the current event loop."""

    state: ServerState
    grpc_server: grpc.aio.Server | None = None
    http_server: HttpServer | None = None
    health: HealthWatcher | None = None
    servicer: AuthorizationServicer | None = None
    grpc_port: int | None = None  # bound TCP port, when GRPC_PORT is set
    http_port: int | None = None  # bound HTTP port, when HTTP_PORT is set
    tls: TlsReloader | None = None  # TCP listeners' TLS files, when TLS_CERT_FILE is set
    _socket_inode: int | None = None
    _http_socket_inode: int | None = None
    _publish_task: asyncio.Task[None] | None = None
    _http_tcp: asyncio.Server | None = None  # the TCP listener, re-opened on new TLS files
    _http_tls_generation: int = 0
    _tls_watch: asyncio.Task[None] | None = None

    async def start(self) -> Server:
        state, config = self.state, self.state.config
        if not isinstance(state.replay_store, MeteredReplayStore):
            state.replay_store = MeteredReplayStore(
                state.replay_store, state.metrics, timeout_seconds=config.check_deadline_ms / 1000
            )
        version = "?"
        try:
            policy = state.policy_source.current()
            max_body = int(getattr(policy, "max_body_bytes", 0) or 0)
            version = policy.version
            state.metrics.observe_policy(policy)
        except Exception:  # readiness reports it; the server still answers every check
            log.exception("no policy at start-up")
            max_body = 0
        max_bytes = config.effective_max_request_bytes(max_body)
        options = [
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", max_bytes),
            # A second instance must fail to bind, not share the port; workers share it (the
            # supervisor has checked that nobody else holds it).
            ("grpc.so_reuseport", 1 if state.worker is not None else 0),
        ]
        tls_files = TlsFiles.from_config(config)
        self.tls = TlsReloader(tls_files) if tls_files is not None else None
        server = grpc.aio.server(options=options)
        self.servicer = AuthorizationServicer(state)
        server.add_generic_rpc_handlers((self.servicer.handler(),))
        health_servicer = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        self.health = HealthWatcher(state, health_servicer)
        if config.unix_socket:
            try:
                path = unix_socket.prepare(config.unix_socket)
            except OSError as exc:
                raise InvalidConfig(
                    f"UNIX_SOCKET: cannot prepare {config.unix_socket}: {exc}"
                ) from exc
            old_umask = os.umask(0o777 & ~config.socket_mode)  # no window with a looser mode
            try:
                server.add_insecure_port(f"unix:{path}")
            except RuntimeError as exc:
                raise InvalidConfig(f"UNIX_SOCKET: cannot bind {path}") from exc
            finally:
                os.umask(old_umask)
        if config.grpc_port:
            address = f"{config.grpc_host}:{config.grpc_port}"
            try:
                if self.tls is not None:
                    self.grpc_port = server.add_secure_port(address, self.tls.grpc_credentials())
                else:
                    self.grpc_port = server.add_insecure_port(address)
            except RuntimeError as exc:
                raise InvalidConfig(
                    f"GRPC_PORT: cannot bind {address} (in use, or not a local address)"
                ) from exc
        if config.unix_socket or config.grpc_port:  # HTTP only: no gRPC server threads at all
            await server.start()
            self.grpc_server = server
        if config.unix_socket:
            unix_socket.set_mode(config.unix_socket, config.socket_mode)
            self._socket_inode = os.stat(config.unix_socket).st_ino
        await self.health.update()
        self.health.start()
        if config.http_port or config.http_unix_socket:
            await self._start_http(max_bytes)
        if state.worker is not None:
            self._publish_task = asyncio.get_running_loop().create_task(self._publish())
        log.info(
            "serving policy %s (unix socket %s, grpc port %s, http %s:%s, http socket %s, tls %s)",
            version,
            config.unix_socket or "off",
            self.grpc_port or "off",
            config.http_host,
            self.http_port or "off",
            config.http_unix_socket or "off",
            ("mtls" if self.tls.files.mutual else "on") if self.tls else "off",
        )
        return self

    async def _start_http(self, max_bytes: int) -> None:
        """The HTTP API on TCP and/or a Unix socket (same hygiene as the gRPC socket)."""
        state, config = self.state, self.state.config
        assert self.servicer is not None
        http = self.http_server = HttpServer(
            HttpApi(state, self.servicer), max_body_bytes=max_bytes
        )
        if config.http_port:
            http_tls = self.tls if config.http_tls else None
            try:
                self.http_port = await http.listen_tcp(
                    config.http_host,
                    config.http_port,
                    reuse_port=state.worker is not None,
                    ssl_context=http_tls.ssl_context() if http_tls is not None else None,
                )
            except OSError as exc:
                raise InvalidConfig(
                    f"HTTP_PORT: cannot listen on {config.http_host}:{config.http_port}: "
                    f"{exc.strerror or exc}"
                ) from exc
            self._http_tcp = http.servers[-1]
            if http_tls is not None:
                self._http_tls_generation = http_tls.generation
                self._tls_watch = asyncio.create_task(self._watch_http_tls(http_tls))
        if config.http_unix_socket:
            path = config.http_unix_socket
            try:
                unix_socket.prepare(path, "HTTP_UNIX_SOCKET")
            except OSError as exc:
                raise InvalidConfig(f"HTTP_UNIX_SOCKET: cannot prepare {path}: {exc}") from exc
            old_umask = os.umask(0o777 & ~config.socket_mode)  # no window with a looser mode
            try:
                await http.listen_unix(path)
            except OSError as exc:
                raise InvalidConfig(
                    f"HTTP_UNIX_SOCKET: cannot bind {path}: {exc.strerror or exc}"
                ) from exc
            finally:
                os.umask(old_umask)
            unix_socket.set_mode(path, config.socket_mode)
            self._http_socket_inode = os.stat(path).st_ino

    async def stop(self, grace: float | None = None) -> None:
        """Drain: NOT_SERVING, answer what is in flight within ``grace``, remove the socket.

        grpc.aio's ``stop(grace)`` only waits for handlers already running: checks that Envoy
        has sent but grpc has not yet handed to a handler would be cancelled (Envoy answers
        them 503). So after NOT_SERVING we keep serving until no check has started for
        ``DRAIN_QUIET_SECONDS`` (or the grace runs out), and only then stop.
        """
        state = self.state
        grace = state.config.grace_seconds if grace is None else grace
        deadline = time.monotonic() + grace
        state.draining = True
        if self.health is not None:
            await self.health.drain()
        if self.servicer is not None and grace > 0:
            await self._quiesce(self.servicer, deadline)
        if self.grpc_server is not None:
            await self.grpc_server.stop(max(0.0, deadline - time.monotonic()))
        if self._tls_watch is not None:
            self._tls_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tls_watch
        if self.http_server is not None:
            await self.http_server.close(max(0.0, deadline - time.monotonic()))
        self._remove_socket()
        if self._publish_task is not None:
            self._publish_task.cancel()
            state.worker.publish(state, state.metrics.registry_exposition())
        state.metrics.set_down()
        for hook in state.on_shutdown:
            try:
                result = hook()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("shutdown hook failed")

    async def _publish(self) -> None:
        """A worker's figures and status for its siblings' ``/metrics`` and ``/health``."""
        state, role = self.state, self.state.worker
        role.retire_predecessor()
        state.metrics.aggregate = role.exposition
        while True:
            try:
                role.publish(state, state.metrics.registry_exposition())
            except Exception:  # a full disk must not stop the worker deciding
                log.exception("worker %s: cannot publish metrics", role.name)
            await asyncio.sleep(workers.PUBLISH_INTERVAL_SECONDS)

    async def _watch_http_tls(self, tls: TlsReloader) -> None:
        """Re-open the HTTP TCP listener with a new context when the TLS files changed.

        An ``SSLContext`` can gain a CA but never lose one, so a new context (and a new
        listening socket on the same port) is the only way a removed client CA stops being
        trusted. Open connections keep their old session; new ones get the new files.
        """
        while True:
            await asyncio.sleep(TLS_WATCH_SECONDS)
            tls.refresh()
            http = self.http_server
            if tls.generation == self._http_tls_generation or http is None or not self.http_port:
                continue
            try:
                context = tls.ssl_context()
            except (OSError, ssl.SSLError) as exc:
                log.error("HTTP listener keeps its TLS files: %s", exc)
                continue
            if self._http_tcp is not None:
                self._http_tcp.close()
                http.servers.remove(self._http_tcp)
                self._http_tcp = None
            try:
                await http.listen_tcp(
                    self.state.config.http_host,
                    self.http_port,
                    reuse_port=self.state.worker is not None,
                    ssl_context=context,
                )
            except OSError as exc:  # the port was taken in between: try again next round
                log.error("HTTP listener could not re-open on port %s: %s", self.http_port, exc)
                continue
            self._http_tcp, self._http_tls_generation = http.servers[-1], tls.generation
            log.info("HTTP listener re-opened with the new TLS files")

    @staticmethod
    async def _quiesce(servicer: AuthorizationServicer, deadline: float) -> None:
        while time.monotonic() < deadline:
            quiet_for = time.monotonic() - servicer.last_started
            if servicer.active == 0 and quiet_for >= DRAIN_QUIET_SECONDS:
                return
            await asyncio.sleep(DRAIN_POLL_SECONDS)

    def _remove_socket(self) -> None:
        config = self.state.config
        for path, inode in (
            (config.unix_socket, self._socket_inode),
            (config.http_unix_socket, self._http_socket_inode),
        ):
            if not path or inode is None:
                continue
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == inode:  # never remove a successor's socket
                    unix_socket.remove(path)


async def serve(config: ServerConfig, state: ServerState | None = None) -> int:
    """Run until SIGTERM/SIGINT, then drain; returns the exit code."""
    state = state if state is not None else build_state(config)
    server = Server(state)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            server._remove_socket()
            os._exit(1)
        log.info("%s: draining (grace %.1f s)", signal.Signals(signum).name, config.grace_seconds)
        stop.set()

    def on_hup() -> None:
        if state.reload is None:
            log.info("SIGHUP: hot reload is not wired; ignoring")
            return
        loop.run_in_executor(None, state.reload)

    # Before the sockets open: a SIGTERM once they are live (a supervisor, a test) drains;
    # it must never meet the default action, which kills and leaves the socket file behind.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await server.start()
    except BaseException:
        await server.stop(0)
        raise
    heap.freeze()  # the policy stays out of full collections (see ``heap``)
    role = "ready" if state.worker is None else f"worker {state.worker.name} ready"
    print(f"extauthz: {role} (pid {os.getpid()})", file=sys.stderr, flush=True)
    await stop.wait()
    await server.stop(config.grace_seconds)
    heap.disable()
    log.info("stopped")
    return 0
