"""One decision for one ``RequestContext``: the decider behind every door.

Every door is decode -> decider -> encode: the gRPC servicer and Envoy's HTTP mode
(``server.grpc_service``, ``server.http_authz``), ``/v1/evaluate`` and ``/evaluate``
(``server.http_api``, ``server.evaluate_api``) and the embedded middleware
(``middleware._common``). The decider takes the policy once per check, runs the engine,
makes the webhook replay claim, turns any failure into the one internal-error denial
(``outcome.internal_error``) and reports each decision once to its ``Observers`` (the server's
metrics, trace span and decision log; the middleware has none). It never raises.

    decide(ctx)             -> Outcome   a sync replay store (the WSGI middleware)
    await decide_async(ctx) -> Outcome   a sync or async store
    begin(ctx)              -> Outcome | Claim

``begin`` is for a dispatcher that saves an await: most checks need no replay claim, so they
are decided with no coroutine at all, and only a ``Claim`` (a webhook delivery) is awaited
(``await claim.outcome()``). The server's gRPC and HTTP dispatch use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .context import RequestContext
from .decision import Decision
from .engine.pipeline import PLAIN, Pending, Phases, begin, claim_async, claim_sync, complete
from .outcome import POLICY_VIOLATION, Outcome, internal_error, invalid_request

if TYPE_CHECKING:
    from .engine.model import CompiledPolicy
    from .engine.replay import AsyncReplayStore, ReplayStore
    from .policy.source import PolicySource

#: ``(decision, context or None, latency in seconds, transport)``, once per decision;
#: ``server.decision_log.DecisionLog.submit`` has this signature.
DecisionHook = Callable[[Decision, RequestContext | None, float, str], None]


@dataclass(frozen=True, slots=True)
class Observers:
    """What the decider reports to; every hook is optional and called in the order given.

    ``decided``  each decision, internal errors included, once, after any replay claim
    ``rejected`` a request that never became a context (``Decider.rejected``)
    ``policy``   the source's policy, once per check (not a caller-supplied one)
    ``error``    a failure's code: ``"internal_error"``, or ``InvalidContext.code`` for a
                 rejected request
    ``phases``   this check's phase evaluators (tracing's child spans), else ``PLAIN``
    """

    decided: tuple[DecisionHook, ...] = ()
    rejected: tuple[DecisionHook, ...] = ()
    policy: tuple[Callable[[CompiledPolicy], None], ...] = ()
    error: tuple[Callable[[str], None], ...] = ()
    phases: Callable[[], Phases] | None = None


NO_OBSERVERS = Observers()


@dataclass(slots=True)
class Claim:
    """A check decided but for its webhook replay claim (``Decider.begin``)."""

    decider: Decider
    pending: Pending
    transport: str
    start: float  # time.perf_counter() when the check began
    phases: Phases

    async def outcome(self) -> Outcome:
        """Claim against the (sync or async) store, then finish and observe; never raises."""
        decider, pending = self.decider, self.pending
        try:
            on_phase = self.phases.on_phase
            claim_start = time.time_ns() if on_phase is not None else 0
            claimed = await claim_async(pending, decider.replay_store)
            if on_phase is not None:
                on_phase("replay", claim_start, time.time_ns())
            outcome = decider._finished(pending, claimed)
        except Exception:
            outcome = decider._failed(pending.ctx)
        return decider._observed(outcome, self.start, self.transport, pending.ctx)

    def outcome_sync(self) -> Outcome:
        """``outcome`` with a sync store (an async store counts as unavailable)."""
        decider, pending = self.decider, self.pending
        try:
            outcome = decider._finished(pending, claim_sync(pending, decider.replay_store))
        except Exception:
            outcome = decider._failed(pending.ctx)
        return decider._observed(outcome, self.start, self.transport, pending.ctx)


@dataclass(slots=True)
class Decider:
    """Decides on ``source.current()``, claims with ``replay_store``, reports to ``observers``.

    ``replay_store`` None is the engine's per-process store. ``replay_fail_open`` is the
    operator's choice when the store is down (MONITOR instead of a 503 denial).
    """

    source: PolicySource
    replay_store: ReplayStore | AsyncReplayStore | None = None
    replay_fail_open: bool = False
    observers: Observers = NO_OBSERVERS

    def begin(
        self, ctx: RequestContext, transport: str, policy: CompiledPolicy | None = None
    ) -> Outcome | Claim:
        """The ``Outcome``, or the ``Claim`` to await when a replay claim is due; never raises.

        ``policy`` replaces the source's for this check (a caller-supplied policy on
        ``/evaluate``, only where the operator allowed it).
        """
        start = time.perf_counter()
        try:
            if policy is None:
                policy = self.source.current()
                for hook in self.observers.policy:
                    hook(policy)
            phases_of = self.observers.phases
            phases = PLAIN if phases_of is None else phases_of()
            result = begin(policy, ctx, time.time(), phases)
            if isinstance(result, Pending):
                return Claim(self, result, transport, start, phases)
            outcome = _outcome(policy, result)
        except Exception:
            outcome = self._failed(ctx)
        return self._observed(outcome, start, transport, ctx)

    def decide(
        self, ctx: RequestContext, transport: str = "embedded", policy: CompiledPolicy | None = None
    ) -> Outcome:
        """Decide, claiming synchronously when a claim is due; never raises."""
        decided = self.begin(ctx, transport, policy)
        return decided.outcome_sync() if isinstance(decided, Claim) else decided

    async def decide_async(
        self, ctx: RequestContext, transport: str = "embedded", policy: CompiledPolicy | None = None
    ) -> Outcome:
        """Decide, awaiting the replay claim when one is due; never raises."""
        decided = self.begin(ctx, transport, policy)
        return await decided.outcome() if isinstance(decided, Claim) else decided

    def rejected(self, reason: str, transport: str, code: str) -> Outcome:
        """A request that never became a context: the 400 denial, reported as ``code``."""
        for hook in self.observers.error:
            hook(code)
        outcome = invalid_request(reason)
        for observe in self.observers.rejected:
            observe(outcome.decision, None, 0.0, transport)
        return outcome

    def _finished(self, pending: Pending, claimed: bool | BaseException) -> Outcome:
        return _outcome(pending.policy, complete(pending, claimed, self.replay_fail_open))

    def _failed(self, ctx: RequestContext) -> Outcome:
        """Count the internal error and deny with 500 (``internal_error`` logs it with an id)."""
        for hook in self.observers.error:
            hook("internal_error")
        return internal_error(ctx.id)

    def _observed(
        self, outcome: Outcome, start: float, transport: str, ctx: RequestContext
    ) -> Outcome:
        """Report the decision and its latency since ``start``, once per check."""
        hooks = self.observers.decided
        if hooks:
            decision = outcome.decision
            latency = time.perf_counter() - start
            for hook in hooks:
                hook(decision, ctx, latency, transport)
        return outcome


def _outcome(policy: CompiledPolicy, decision: Decision) -> Outcome:
    """Not cacheable when the decision's route takes webhooks (it depends on replay state)."""
    route = policy.routes_by_id.get(decision.metadata.route_id or "")
    # Positional: cheaper than keywords for a frozen dataclass, on every check.
    return Outcome(decision, POLICY_VIOLATION, route is None or route.webhook is None)
