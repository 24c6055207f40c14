"""What the gRPC servicer, the HTTP API and the health checks share inside one server.

``policy_source`` is the seam for hot reload (``policy.source.PolicySource``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..policy.source import FixedPolicy, PolicySource
from .config import ServerConfig

if TYPE_CHECKING:
    from ..engine.replay import AsyncReplayStore, ReplayStore
    from ..policy import CompiledPolicy
    from .decision_log import DecisionLog
    from .metrics import Metrics
    from .tracing import CheckTracer
    from .workers import WorkerRole

StaticPolicySource = FixedPolicy  # the server's older name for a policy loaded once


def default_replay_store() -> ReplayStore:
    """The bounded per-process store (replay protection is then per process, not shared)."""
    from ..engine import InMemoryReplayStore

    return InMemoryReplayStore()


@dataclass(slots=True)
class ServerState:
    """Mutable only in ``draining``; everything else is set once at start-up."""

    config: ServerConfig
    policy_source: PolicySource
    metrics: Metrics
    replay_store: ReplayStore | AsyncReplayStore = field(default_factory=default_replay_store)
    started_at: float = field(default_factory=time.time)
    draining: bool = False
    # Seams for the hot reloader and the Redis store (see ``app.build_state``): ``reload`` is
    # called on SIGHUP; each ``on_shutdown`` callable (sync or async) runs once after drain.
    reload: Callable[[], Any] | None = None
    # The decision log, None when DECISION_LOG=off.
    decision_log: DecisionLog | None = None
    # OpenTelemetry, None unless the OTEL_* variables turn it on.
    tracer: CheckTracer | None = None
    on_shutdown: list[Callable[[], Any]] = field(default_factory=list)
    # Set when this server is one of a supervisor's workers, else None.
    worker: WorkerRole | None = None

    def policy(self) -> CompiledPolicy:
        return self.policy_source.current()
