"""One decision for one ``RequestContext``, shared by the gRPC servicer and the HTTP API.

Every failure becomes a decision through one table, so callers always get an answer:

    failure                          status  body code          rule hit
    request cannot be converted      400     INVALID_REQUEST    request.invalid
    replay store slower than the     503     POLICY_VIOLATION   webhook.<p>.replayStoreUnavailable
      check deadline (fail closed)
    any other internal error         500     INTERNAL_ERROR     server.internalError

The deadline (``CHECK_DEADLINE_MS``, 150 ms, below Envoy's 200 ms) bounds the only await in a
check, the replay-store claim (see ``MeteredReplayStore``): a late store is a store outage, so
the operator's fail-closed/fail-open choice applies and the answer is explicit, before Envoy
gives up. Pure-CPU evaluation is not pre-emptible; the policy's compiled limits bound it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from .._frozen import frozen_dataclass
from ..context import RequestContext
from ..decision import BLOCK, Decision, DecisionMetadata, RuleHit
from ..engine.model import CompiledPolicy
from ..engine.pipeline import PLAIN, Pending, Phases, begin, claim_async, complete
from ..envoy.response import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    POLICY_VIOLATION,
)
from .state import ServerState

log = logging.getLogger("extauthz.server")

INTERNAL_ERROR_STATUS = 500
INVALID_REQUEST_STATUS = 400


@frozen_dataclass
class Outcome:
    decision: Decision
    error_code: str = POLICY_VIOLATION
    # False when the decision depends on more than the request (webhook replay state): the
    # client SDK must not cache it (``cache: no-store`` in dynamic metadata).
    cacheable: bool = True


def invalid_request(reason: str, request_id: str | None = None) -> Outcome:
    """A request we could not turn into a context: a deterministic 400 denial."""
    rid = request_id or uuid.uuid4().hex
    decision = Decision(
        BLOCK,
        INVALID_REQUEST_STATUS,
        f"invalid request: {reason}",
        (RuleHit("request.invalid", "high", reason),),
        metadata=DecisionMetadata(request_id=rid),
    )
    return Outcome(decision, INVALID_REQUEST)


def internal_error(request_id: str | None = None) -> Outcome:
    """Log the exception being handled under a fresh error id and deny with 500."""
    error_id = uuid.uuid4().hex[:12]
    log.exception(
        "internal error while deciding (error id %s, request id %s)", error_id, request_id
    )
    decision = Decision(
        BLOCK,
        INTERNAL_ERROR_STATUS,
        f"internal error (error id {error_id})",
        (RuleHit("server.internalError", "high", f"error id {error_id}"),),
        metadata=DecisionMetadata(request_id=request_id or uuid.uuid4().hex),
    )
    return Outcome(decision, INTERNAL_ERROR)


def decide_now(
    state: ServerState,
    ctx: RequestContext,
    transport: str,
    policy: CompiledPolicy | None = None,
) -> Outcome | Coroutine[Any, Any, Outcome]:
    """Evaluate ``ctx`` against the current policy (taken once); never raises.

    Returns the ``Outcome`` or, when a webhook replay claim is due (the only await in a check),
    a coroutine to await for it: a check needing no claim creates no coroutine (see ``decide``).
    ``policy`` replaces the server's for this check (a caller-supplied policy on ``/evaluate``,
    only where the operator allowed it).
    """
    start = time.perf_counter()
    try:
        if policy is None:
            policy = state.policy_source.current()
            state.metrics.observe_policy(policy)
        tracer = state.tracer
        phases = PLAIN if tracer is None else tracer.phases()  # child spans only if sampled
        result = begin(policy, ctx, time.time(), phases)
        if isinstance(result, Pending):
            return _decide_after_claim(state, ctx, transport, start, result, phases)
        outcome = _outcome(policy, result)
    except Exception:
        outcome = _failed(state, ctx)
    return _observed(state, outcome, start, transport, ctx)


async def decide(
    state: ServerState,
    ctx: RequestContext,
    transport: str,
    policy: CompiledPolicy | None = None,
) -> Outcome:
    """``decide_now``, awaited when it has to be; never raises."""
    decided = decide_now(state, ctx, transport, policy)
    return decided if isinstance(decided, Outcome) else await decided


async def _decide_after_claim(
    state: ServerState,
    ctx: RequestContext,
    transport: str,
    start: float,
    pending: Pending,
    phases: Phases = PLAIN,
) -> Outcome:
    """The rest of ``decide_now`` for a check whose replay claim has to be awaited."""
    try:
        on_phase = phases.on_phase
        claim_start = time.time_ns() if on_phase is not None else 0
        claimed = await claim_async(pending, state.replay_store)
        if on_phase is not None:
            on_phase("replay", claim_start, time.time_ns())
        outcome = _outcome(
            pending.policy, complete(pending, claimed, state.config.replay_fail_open)
        )
    except Exception:
        outcome = _failed(state, ctx)
    return _observed(state, outcome, start, transport, ctx)


def _failed(state: ServerState, ctx: RequestContext) -> Outcome:
    """Count the internal error and deny with 500 (``internal_error`` logs it with an id)."""
    state.metrics.observe_error("internal_error")
    return internal_error(ctx.id)


def _observed(
    state: ServerState,
    outcome: Outcome,
    start: float,
    transport: str,
    ctx: RequestContext | None = None,
) -> Outcome:
    """Count the decision and its latency since ``start``, once per check; log it if sampled."""
    decision = outcome.decision
    latency = time.perf_counter() - start
    state.metrics.observe_decision(decision.action, decision.metadata.route_id, latency, transport)
    tracer = state.tracer
    if tracer is not None:  # tracing off: this test is all a check pays
        tracer.annotate(decision)
    decision_log = state.decision_log
    if decision_log is not None:  # DECISION_LOG=off: likewise
        decision_log.submit(decision, ctx, latency, transport)
    return outcome


def observe_rejected(state: ServerState, outcome: Outcome, transport: str) -> Outcome:
    """Log a request that never became a context (a 400 ``invalid_request``)."""
    decision_log = state.decision_log
    if decision_log is not None:
        decision_log.submit(outcome.decision, None, 0.0, transport)
    return outcome


def _outcome(policy: CompiledPolicy, decision: Decision) -> Outcome:
    """Not cacheable when the decision's route takes webhooks (it depends on replay state)."""
    route = policy.routes_by_id.get(decision.metadata.route_id or "")
    # Positional: cheaper than keywords for a frozen dataclass, on every check.
    return Outcome(decision, POLICY_VIOLATION, route is None or route.webhook is None)
