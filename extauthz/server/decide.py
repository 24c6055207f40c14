"""One decision for one ``RequestContext``, shared by the gRPC servicer and the HTTP API.

Every failure becomes a decision through one table, so callers always get an answer:

    failure                      status  body code           rule hit
    request cannot be converted  400     INVALID_REQUEST     request.invalid
    deadline exceeded            504     DEADLINE_EXCEEDED   server.deadlineExceeded
    any other internal error     500     INTERNAL_ERROR      server.internalError

504 (not 503) for the deadline keeps our explicit answer apart from Envoy's own
``status_on_error: 503`` in access logs. The deadline bounds every await of the evaluation
(the replay store); pure-CPU evaluation is not pre-emptible and is bounded by the policy's
compiled limits instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from .._exceptions import ContractShieldTimeout
from ..context import RequestContext
from ..decision import BLOCK, Decision, DecisionMetadata, RuleHit
from ..engine import evaluate_async
from ..envoy.response import (
    DEADLINE_EXCEEDED,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    POLICY_VIOLATION,
)
from .state import ServerState

log = logging.getLogger("extauthz.server")

INTERNAL_ERROR_STATUS = 500
DEADLINE_STATUS = 504
INVALID_REQUEST_STATUS = 400


@dataclass(frozen=True, slots=True)
class Outcome:
    decision: Decision
    error_code: str = POLICY_VIOLATION


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


def deadline_exceeded(deadline_ms: int, request_id: str) -> Outcome:
    decision = Decision(
        BLOCK,
        DEADLINE_STATUS,
        f"decision not reached within {deadline_ms} ms",
        (RuleHit("server.deadlineExceeded", "high", f"deadline {deadline_ms} ms"),),
        metadata=DecisionMetadata(request_id=request_id),
    )
    return Outcome(decision, DEADLINE_EXCEEDED)


async def decide(state: ServerState, ctx: RequestContext, transport: str) -> Outcome:
    """Evaluate ``ctx`` against the current policy (taken once); never raises."""
    metrics = state.metrics
    config = state.config
    start = time.perf_counter()
    try:
        policy = state.policy_source.current()
        metrics.observe_policy(policy)
        async with asyncio.timeout(config.check_deadline_ms / 1000):
            decision = await evaluate_async(
                policy,
                ctx,
                replay_store=state.replay_store,
                replay_fail_open=config.replay_fail_open,
            )
        outcome = Outcome(decision)
    except TimeoutError:
        metrics.observe_error(ContractShieldTimeout.code)
        log.warning(
            "decision deadline of %d ms exceeded (request id %s)", config.check_deadline_ms, ctx.id
        )
        outcome = deadline_exceeded(config.check_deadline_ms, ctx.id)
    except Exception:
        metrics.observe_error("internal_error")
        outcome = internal_error(ctx.id)
    d = outcome.decision
    metrics.observe_decision(d.action, d.metadata.route_id, time.perf_counter() - start, transport)
    return outcome
