"""What one run of the pipeline saw, kept only when asked: the record ``explain`` reads.

``recording(record)`` returns ``Phases`` that do what ``PLAIN`` does and also fill ``record``:
the canonical path, the route matched and its parameters, the body value the checks read,
which phases ran, the hits each phase reported, the webhook signature's result and the view
the CEL rules read. The plain path pays one ``None`` test for it (``Phases.on_prepared``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..context import RequestContext
from .cel import RequestView
from .checks import CEL as CEL_PHASE
from .checks import CONTRACT, LIMITS, PHASES, REPLAY, ROUTE, VULNERABILITY, WEBHOOK
from .model import CompiledPolicy, CompiledRoute
from .pipeline import PLAIN, Pending, Phases, prepare


@dataclass(slots=True)
class Record:
    """What the pipeline saw deciding one request (``complete``: it got to the end)."""

    complete: bool = False
    canonical_path: str = ""
    route: CompiledRoute | None = None
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None  # the parsed body value the checks read (None: none parsed)
    signature_valid: bool = False
    ran: list[str] = field(default_factory=list)  # the phases that ran, in order
    # (phase, first hit, end) of the hits each phase evaluator reported
    spans: list[tuple[str, int, int]] = field(default_factory=list)
    cel_view: RequestView | None = None  # what the route's CEL rules read
    pending: Pending | None = None
    prepared_hits: int = 0  # hits before the replay claim (it may insert one)

    def hit_phases(self) -> list[str]:
        """The phase of each of the decision's hits, in order (the replay claim's included).

        Hits outside an evaluator's span are the pipeline's own: before the limits phase the
        route's (ambiguous path, unmatched route), after it the contract step's (malformed
        body, a body that is not JSON, parameters).
        """
        if self.pending is None:
            return []
        phases = [ROUTE] * self.prepared_hits
        limits_end = self.prepared_hits
        for name, start, end in self.spans:
            phases[start:end] = [name] * (end - start)
            if name == LIMITS:
                limits_end = end
        spanned = {i for _, start, end in self.spans for i in range(start, end)}
        for i in range(limits_end, self.prepared_hits):
            if i not in spanned:
                phases[i] = CONTRACT
        if len(self.pending.hits) > self.prepared_hits:  # the claim inserted its hit
            phases.insert(self.pending.replay_at, REPLAY)
        return phases

    def phases_by_id(self) -> dict[str, str]:
        """The phase of each hit id recorded (the built-in ids: before rules renamed them)."""
        if self.pending is None:
            return {}
        return dict(zip((h.id for h in self.pending.hits), self.hit_phases(), strict=True))

    def _prepared(
        self, pending: Pending, path: str, params: dict[str, str], body: Any, verified: object
    ) -> None:
        route = pending.route
        self.complete = True
        self.pending = pending
        self.prepared_hits = len(pending.hits)
        self.canonical_path = path
        self.route = route
        self.params = dict(params)
        self.body = body
        self.signature_valid = verified is not None
        ran = {ROUTE, *self.ran}
        if route is not None and route.contract is not None:  # the contract step runs for it
            ran.add(CONTRACT)
        if route is not None and route.webhook is not None and route.webhook.replay_protection:
            ran.add(REPLAY)  # claimed once nothing else blocks (``pipeline.apply_claim``)
        self.ran = [phase for phase in PHASES if phase in ran]


def recording(record: Record, base: Phases = PLAIN) -> Phases:
    """``base`` (``PLAIN``, or ``timed`` ones) that also fill ``record``."""

    def span(phase: str, fn: Callable[..., Any], hits_at: int) -> Callable[..., Any]:
        """``fn``, noting that ``phase`` ran and which hits (argument ``hits_at``) it added."""

        def run(*args: Any) -> Any:
            hits = args[hits_at]
            start = len(hits)
            try:
                return fn(*args)
            finally:
                record.ran.append(phase)
                record.spans.append((phase, start, len(hits)))

        return run

    def cel(plan: Any, view: RequestView, hits: list[Any]) -> Any:
        record.cel_view = view
        return cel_phase(plan, view, hits)

    cel_phase = span(CEL_PHASE, base.cel, 2)
    return Phases(
        base.canonicalize,
        base.body,
        span(VULNERABILITY, base.vulnerability, 4),
        span(LIMITS, base.limits, 4),
        span(CONTRACT, base.contract, 2),
        span(WEBHOOK, base.webhook, 4),
        cel,
        base.on_phase,
        record._prepared,
    )


def record(policy: CompiledPolicy, ctx: RequestContext, now: float | None = None) -> Record:
    """Run the pipeline up to the replay claim (never claiming) and return its record.

    Never raises: an engine failure leaves the record incomplete (``complete`` False).
    """
    rec = Record()
    with contextlib.suppress(Exception):
        prepare(policy, ctx, time.time() if now is None else now, recording(rec))
    return rec
