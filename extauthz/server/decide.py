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

from .._frozen import frozen_dataclass
from ..context import RequestContext
from ..decision import BLOCK, Decision, DecisionMetadata, RuleHit
from ..engine import evaluate_async
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


async def decide(state: ServerState, ctx: RequestContext, transport: str) -> Outcome:
    """Evaluate ``ctx`` against the current policy (taken once); never raises."""
    metrics = state.metrics
    config = state.config
    start = time.perf_counter()
    try:
        policy = state.policy_source.current()
        metrics.observe_policy(policy)
        decision = await evaluate_async(
            policy, ctx, replay_store=state.replay_store, replay_fail_open=config.replay_fail_open
        )
        route = policy.routes_by_id.get(decision.metadata.route_id or "")
        # Positional: cheaper than keywords for a frozen dataclass, on every check.
        outcome = Outcome(decision, POLICY_VIOLATION, route is None or route.webhook is None)
    except Exception:
        metrics.observe_error("internal_error")
        outcome = internal_error(ctx.id)
        decision = outcome.decision
    metrics.observe_decision(
        decision.action, decision.metadata.route_id, time.perf_counter() - start, transport
    )
    return outcome
