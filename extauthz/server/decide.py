"""The server's decider: ``extauthz.decider.Decider`` on the server's policy source and replay
store, observed by its metrics, trace span and decision log.

    failure                          status  body code          rule hit
    request cannot be converted      400     INVALID_REQUEST    request.invalid
    replay store slower than the     503     POLICY_VIOLATION   webhook.<p>.replayStoreUnavailable
      check deadline (fail closed)
    any other internal error         500     INTERNAL_ERROR     server.internalError

The deadline (``CHECK_DEADLINE_MS``, 150 ms, below Envoy's 200 ms) bounds the only await in a
check, the replay-store claim (see ``MeteredReplayStore``): a late store is a store outage, so
the operator's fail-closed/fail-open choice applies and the answer is explicit, before Envoy
gives up. Pure-CPU evaluation is not pre-emptible; the policy's compiled limits bound it.

The doors hold one ``server_decider(state)``, built when the server starts; ``decide_now`` and
``decide`` build one per call, for tests and tools that hold only a ``ServerState``.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from ..context import RequestContext
from ..decider import Claim, Decider, DecisionHook, Observers
from ..decision import Decision
from ..engine.model import CompiledPolicy
from ..outcome import (
    INTERNAL_ERROR_STATUS,
    INVALID_REQUEST_STATUS,
    Outcome,
    internal_error,
    invalid_request,
)
from .state import ServerState

__all__ = [
    "INTERNAL_ERROR_STATUS",
    "INVALID_REQUEST_STATUS",
    "Outcome",
    "decide",
    "decide_now",
    "internal_error",
    "invalid_request",
    "server_decider",
    "server_observers",
]


def server_observers(state: ServerState) -> Observers:
    """Metrics always; the trace span with tracing on; the decision log unless it is off."""
    metrics = state.metrics
    decided: list[DecisionHook] = [metrics.decided]
    rejected: list[DecisionHook] = []
    tracer = state.tracer
    if tracer is not None:  # tracing off: no hook at all
        annotate = tracer.annotate

        def span(decision: Decision, ctx: RequestContext | None, latency: float, tr: str) -> None:
            annotate(decision)

        decided.append(span)
    if state.decision_log is not None:  # DECISION_LOG=off: likewise
        decided.append(state.decision_log.submit)
        rejected.append(state.decision_log.submit)
    return Observers(
        decided=tuple(decided),
        rejected=tuple(rejected),
        policy=(metrics.observe_policy,),
        error=(metrics.observe_error,),
        phases=tracer.phases if tracer is not None else None,
    )


def server_decider(state: ServerState) -> Decider:
    """The decider every door of this server shares."""
    return Decider(
        state.policy_source,
        replay_store=state.replay_store,
        replay_fail_open=state.config.replay_fail_open,
        observers=server_observers(state),
    )


def decide_now(
    state: ServerState,
    ctx: RequestContext,
    transport: str,
    policy: CompiledPolicy | None = None,
) -> Outcome | Coroutine[Any, Any, Outcome]:
    """The ``Outcome``, or a coroutine of it when a replay claim is due; never raises."""
    decided = server_decider(state).begin(ctx, transport, policy)
    return decided.outcome() if isinstance(decided, Claim) else decided


async def decide(
    state: ServerState,
    ctx: RequestContext,
    transport: str,
    policy: CompiledPolicy | None = None,
) -> Outcome:
    """``decide_now``, awaited when it has to be; never raises."""
    return await server_decider(state).decide_async(ctx, transport, policy)
