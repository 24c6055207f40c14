"""Readiness and health: what ``/ready``, ``/health`` and gRPC health report.

Ready means: a valid policy is loaded and, when the replay store can be pinged (Redis), it
answers within ``PING_TIMEOUT_SECONDS`` (or ``REPLAY_FAIL_OPEN`` is on: then the PDP still
answers every check, so it stays ready and only ``/health`` reports the outage). Health adds detail: ``degraded`` when the PDP still
decides but something needs attention (the replay store is down, the last reload failed),
``unhealthy`` when no policy can be read. A background task re-evaluates readiness every
second and drives gRPC health, so a Redis outage turns NOT_SERVING and recovery SERVING
without anyone calling us.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from .grpc_service import SERVICE_NAME
from .h2_server import NOT_FOUND, GrpcError, Headers
from .state import ServerState
from .tasks import cancel_and_wait

log = logging.getLogger("extauthz.server")

PING_TIMEOUT_SECONDS = 0.5
WATCH_INTERVAL_SECONDS = 1.0
HEALTH_SERVICES = ("", SERVICE_NAME)
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"


@dataclass(frozen=True, slots=True)
class StoreCheck:
    status: str  # ok | down | disabled
    latency_ms: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "latencyMs": self.latency_ms, "error": self.error}


@dataclass(frozen=True, slots=True)
class PolicyCheck:
    status: str  # ok | error
    route_count: int = 0
    version: str | None = None
    loaded_at: float | None = None
    last_reload_error: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "routeCount": self.route_count,
            "version": self.version,
            "loadedAt": self.loaded_at,
            "lastReloadError": self.last_reload_error,
            **({"error": self.error} if self.error else {}),
        }


async def check_store(state: ServerState) -> StoreCheck:
    ping = getattr(state.replay_store, "ping", None)
    if ping is None:
        return StoreCheck("disabled")
    start = time.perf_counter()
    try:
        async with asyncio.timeout(PING_TIMEOUT_SECONDS):
            result = ping()
            if inspect.isawaitable(result):
                result = await result
    except TimeoutError:
        return StoreCheck("down", error=f"no answer within {PING_TIMEOUT_SECONDS:g} s")
    except Exception as exc:
        return StoreCheck("down", error=str(exc) or type(exc).__name__)
    latency = round((time.perf_counter() - start) * 1000, 3)
    if result is False:
        return StoreCheck("down", latency, "ping returned false")
    return StoreCheck("ok", latency)


def check_policy(state: ServerState) -> PolicyCheck:
    last_error = getattr(state.policy_source, "last_error", None)
    last_error = None if last_error is None else str(last_error)
    try:
        policy = state.policy_source.current()
    except Exception as exc:
        return PolicyCheck(
            "error", last_reload_error=last_error, error=str(exc) or type(exc).__name__
        )
    return PolicyCheck(
        "ok",
        route_count=len(policy.route_ids),
        version=policy.version,
        loaded_at=policy.loaded_at,
        last_reload_error=last_error,
    )


async def readiness(state: ServerState) -> tuple[bool, str]:
    """(ready, reason) — the reason names what is missing, for ``/ready`` and logs."""
    if state.draining:
        return False, "draining: the server is shutting down"
    policy = check_policy(state)
    if policy.status != "ok":
        return False, f"no valid policy loaded: {policy.error}"
    store = await check_store(state)
    if store.status == "down":
        if state.config.replay_fail_open:
            # Fail-open means the PDP can still answer every check (webhooks pass without
            # replay protection, hit webhook.*.replayStoreUnavailable): taking it out of
            # rotation would turn the operator's choice into 503s. /health says degraded.
            return True, f"ready (REPLAY_FAIL_OPEN; replay store unavailable: {store.error})"
        return False, f"replay store unavailable: {store.error}"
    return True, "ready"


async def health_report(state: ServerState, version: str) -> dict[str, Any]:
    policy = check_policy(state)
    store = await check_store(state)
    if policy.status != "ok":
        status = "unhealthy"
    elif store.status == "down" or policy.last_reload_error or state.draining:
        status = "degraded"
    else:
        status = "ok"
    report: dict[str, Any] = {
        "status": status,
        "version": version,
        "uptime": round(time.time() - state.started_at, 3),
        "draining": state.draining,
        "checks": {"redis": store.to_dict(), "policy": policy.to_dict()},
    }
    if state.worker is not None:  # every worker's pid and policy version (``workers``)
        report["workers"] = state.worker.statuses()
    return report


class HealthTarget(Protocol):
    """What the watcher drives: grpcio's ``HealthServicer`` or our ``HealthBoard``."""

    async def set(self, service: str, status: int) -> None: ...

    async def enter_graceful_shutdown(self) -> None: ...


class HealthWatcher:
    """Keeps gRPC health in step with readiness, once a second, until drain."""

    def __init__(self, state: ServerState, servicer: HealthServicer | HealthTarget) -> None:
        self._state = state
        self.servicer = servicer
        self._task: asyncio.Task[None] | None = None
        self._serving: bool | None = None

    async def update(self) -> bool:
        ready, reason = await readiness(self._state)
        if ready != self._serving:
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if ready
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in HEALTH_SERVICES:
                await self.servicer.set(name, status)
            if self._serving is not None:
                log.warning(
                    "readiness changed: %s", "SERVING" if ready else f"NOT_SERVING ({reason})"
                )
            self._serving = ready
        return ready

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="health-watcher")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_SECONDS)
            try:
                await self.update()
            except Exception:  # the watcher must outlive any single failed check
                log.exception("readiness check failed")

    async def drain(self) -> None:
        """Stop watching and report NOT_SERVING for good."""
        await cancel_and_wait(self._task)
        self._serving = False
        await self.servicer.enter_graceful_shutdown()


class HealthBoard:
    """gRPC health on the h2 transport (``h2_server``), with grpcio's ``HealthServicer``
    semantics: ``Check`` answers a known service's status (else NOT_FOUND), ``Watch`` sends
    the status now and on every change (SERVICE_UNKNOWN for an unknown service), and after
    ``enter_graceful_shutdown`` every service is NOT_SERVING and stays so."""

    def __init__(self) -> None:
        self._status: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._shutting_down = False

    async def set(self, service: str, status: int) -> None:
        if self._shutting_down:
            return
        self._status[service] = status
        self._wake()

    async def enter_graceful_shutdown(self) -> None:
        if self._shutting_down:
            return
        for service in self._status:
            self._status[service] = health_pb2.HealthCheckResponse.NOT_SERVING
        self._shutting_down = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def check(self, message: bytes, headers: Headers) -> bytes:
        service = health_pb2.HealthCheckRequest.FromString(message).service
        status = self._status.get(service)
        if status is None:
            raise GrpcError(NOT_FOUND, f"unknown service {service!r}")
        return health_pb2.HealthCheckResponse(status=status).SerializeToString()

    async def watch(self, message: bytes, headers: Headers) -> AsyncIterator[bytes]:
        service = health_pb2.HealthCheckRequest.FromString(message).service
        last: int | None = None
        while True:
            changed = self._changed  # taken before reading: no change is missed
            status = self._status.get(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status).SerializeToString()
            await changed.wait()
