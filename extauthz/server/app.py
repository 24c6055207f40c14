"""Server lifecycle: build the state, serve gRPC and HTTP on one event loop, on the addresses
of its listeners (``listeners``: Unix socket and/or TCP, TLS), drain on SIGTERM/SIGINT.

Shutdown follows gRPC's graceful-shutdown example: health turns NOT_SERVING first (Envoy's
health checks and Kubernetes stop sending), then ``server.stop(grace)`` refuses new RPCs and
lets in-flight checks finish, then the listeners stop and remove their socket files. A second
signal exits at once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from . import decision_log, heap, tracing, workers
from .config import ServerConfig
from .grpc_service import AuthorizationServicer
from .h2_server import H2GrpcServer
from .health import HEALTH_CHECK, HEALTH_WATCH, HealthBoard, HealthWatcher
from .http_api import HttpApi
from .http_server import HttpServer
from .listeners import GrpcTcpListener, H2TcpListener, HttpTcpListener, Listener, listeners_for
from .metrics import MeteredReplayStore, Metrics
from .state import ServerState
from .tls import TlsFiles, TlsReloader

log = logging.getLogger("extauthz.server")

DRAIN_QUIET_SECONDS = 0.2  # a drain ends once no check has started for this long
DRAIN_POLL_SECONDS = 0.02


# --- policy source and replay store ------------------------------------------------------
# The hot reloader (config.hot_reload, SIGHUP → state.reload) and the Redis replay store
# (config.redis_url) are chosen here. Kept small: it runs before serving.
def build_state(config: ServerConfig) -> ServerState:
    """Load the policy (raises ``InvalidPolicy``), start hot reload, create the replay store."""
    from ..engine import InMemoryReplayStore
    from ..policy._child import load_policy_for_reload
    from ..policy.reload import PolicyHotReloader
    from ..policy.source import policy_loader

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

    reloader: PolicyHotReloader = PolicyHotReloader(
        config.policy_path,
        # the first load here (nothing serves yet); a large policy's reloads in a child process
        loader=policy_loader(config.policy_base_dir, config.max_document_bytes),
        reload_loader=lambda path: load_policy_for_reload(
            path,
            reloader.current(),
            base_dir=config.policy_base_dir,
            max_document_bytes=config.max_document_bytes,
        ),
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
    """One running PDP: gRPC (+ health) and HTTP on the current event loop, on the addresses
    of its listeners (``listeners``)."""

    state: ServerState
    grpc_server: grpc.aio.Server | None = None  # set once started (no gRPC address: never)
    h2_server: H2GrpcServer | None = None  # the same for the built-in one (GRPC_TRANSPORT)
    http_server: HttpServer | None = None
    health: HealthWatcher | None = None
    servicer: AuthorizationServicer | None = None
    tls: TlsReloader | None = None  # TCP listeners' TLS files, when TLS_CERT_FILE is set
    listeners: list[Listener] = field(default_factory=list)
    _publish_task: asyncio.Task[None] | None = None

    @property
    def grpc_port(self) -> int | None:
        """The bound gRPC TCP port, when GRPC_PORT is set."""
        return self._port(H2TcpListener) or self._port(GrpcTcpListener)

    @property
    def http_port(self) -> int | None:
        """The bound HTTP TCP port, when HTTP_PORT is set."""
        return self._port(HttpTcpListener)

    def _port(self, kind: type[Listener]) -> int | None:
        return next((x.port for x in self.listeners if isinstance(x, kind)), None)

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
        tls_files = TlsFiles.from_config(config)
        self.tls = TlsReloader(tls_files) if tls_files is not None else None
        self.servicer = AuthorizationServicer(state)
        transport: grpc.aio.Server | H2GrpcServer
        if config.grpc_builtin:
            h2 = transport = H2GrpcServer(max_message_bytes=max_bytes)
            for path, method in self.servicer.h2_methods().items():
                h2.add_unary(path, method)
            board = HealthBoard()
            h2.add_unary(HEALTH_CHECK, board.check)
            h2.add_server_stream(HEALTH_WATCH, board.watch)
            self.health = HealthWatcher(state, board)
        else:
            options = [
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                # A second instance must fail to bind, not share the port; workers share it
                # (the supervisor has checked that nobody else holds it).
                ("grpc.so_reuseport", 1 if state.worker is not None else 0),
            ]
            transport = grpc.aio.server(options=options)
            transport.add_generic_rpc_handlers((self.servicer.handler(),))
            health_servicer = HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, transport)
            self.health = HealthWatcher(state, health_servicer)
        if config.http_port or config.http_unix_socket:
            api = HttpApi(state, self.servicer)
            self.http_server = HttpServer(api, max_body_bytes=max_bytes)
        self.listeners = listeners_for(
            config,
            grpc_server=transport,
            http=self.http_server,
            tls=self.tls,
            shared_ports=state.worker is not None,
        )
        # gRPC first, HTTP last: an HTTP port that answers (a probe, a supervisor) means gRPC
        # is serving too, as it always has.
        grpc_listeners = [x for x in self.listeners if x.transport == "grpc"]
        if grpc_listeners and isinstance(transport, H2GrpcServer):
            self.h2_server = transport  # serving as each listener binds
        for listener in grpc_listeners:
            await listener.start()
        if grpc_listeners and not isinstance(transport, H2GrpcServer):
            await transport.start()  # grpcio serves only what was bound before it starts
            self.grpc_server = transport  # HTTP only: no gRPC server threads at all
        await self.health.update()
        self.health.start()
        for listener in self.listeners:
            if listener.transport != "grpc":
                await listener.start()
        if state.worker is not None:
            self._publish_task = asyncio.get_running_loop().create_task(self._publish())
        log.info(
            "serving policy %s on %s",
            version,
            ", ".join(x.describe() for x in self.listeners),
        )
        return self

    async def stop(self, grace: float | None = None) -> None:
        """Drain: NOT_SERVING, answer what is in flight within ``grace``, remove the sockets.

        grpc.aio's ``stop(grace)`` (and ``H2GrpcServer.close``) only wait for calls already
        running: checks that Envoy has sent but the server has not yet handed to a handler
        would be cancelled (Envoy answers them 503). So after NOT_SERVING we keep serving until no check has started for
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
        if self.h2_server is not None:
            await self.h2_server.close(max(0.0, deadline - time.monotonic()))
        for listener in self.listeners:
            await listener.stop()
        if self.http_server is not None:
            await self.http_server.close(max(0.0, deadline - time.monotonic()))
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

    def release(self) -> None:
        """Remove the socket files now (a second signal exits without draining)."""
        for listener in self.listeners:
            listener.release()

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

    @staticmethod
    async def _quiesce(servicer: AuthorizationServicer, deadline: float) -> None:
        while time.monotonic() < deadline:
            quiet_for = time.monotonic() - servicer.last_started
            if servicer.active == 0 and quiet_for >= DRAIN_QUIET_SECONDS:
                return
            await asyncio.sleep(DRAIN_POLL_SECONDS)


async def serve(config: ServerConfig, state: ServerState | None = None) -> int:
    """Run until SIGTERM/SIGINT, then drain; returns the exit code."""
    state = state if state is not None else build_state(config)
    server = Server(state)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            server.release()
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
