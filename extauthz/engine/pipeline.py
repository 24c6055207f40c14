"""The decision pipeline: phases in a fixed order, every hit collected, one ``Decision``.

Order: path canonicalisation and route match, vulnerability checks, limits, body/contract,
webhook signature, webhook replay, CEL rules. The replay claim is made last (after CEL), and
only when the signature is valid and nothing else would block, so a rejected delivery does
not burn its event id; its hit is still listed in phase order.

``Phases`` is the seam for tracing and explaining: ``prepare`` calls every phase evaluator
through it, so ``timed(on_phase)`` reports each phase's span (route, body, vulnerability,
limits, contract, webhook, cel) to a recorder, and ``record.recording`` keeps what the pipeline
saw for ``explain``, while the plain ``PLAIN`` costs what direct calls cost; the engine itself
knows nothing of OpenTelemetry (the server's tracer is the recorder).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .._exceptions import ReplayStoreUnavailable
from ..context import RequestContext
from ..decision import (
    ALLOW,
    BLOCK,
    MONITOR,
    NO_RISK,
    Decision,
    DecisionMetadata,
    Risk,
    RuleHit,
)
from . import body as body_mod
from . import cel as cel_mod
from . import limits as limits_mod
from . import vulnerability as vuln_mod
from . import webhook as webhook_mod
from .canonical import SEMICOLON, canonicalize
from .checks import pipeline_hits
from .checks.contract import MEDIA_TYPE, SCHEMA_INVALID
from .contract import Contract
from .decoders import grpc as grpc_body
from .model import ENFORCE, CompiledPolicy, CompiledRoute
from .replay import InMemoryReplayStore

PATH_AMBIGUOUS = pipeline_hits.PATH_AMBIGUOUS.hit
BODY_MALFORMED = pipeline_hits.BODY_MALFORMED.hit
BODY_DUPLICATE = pipeline_hits.BODY_DUPLICATE.hit
BODY_ENCODING = pipeline_hits.BODY_ENCODING.hit
REQUEST_MALFORMED = pipeline_hits.REQUEST_MALFORMED.hit
ROUTE_UNMATCHED = pipeline_hits.ROUTE_UNMATCHED.hit
INTERNAL_ERROR = pipeline_hits.INTERNAL_ERROR.hit

DEFAULT_REPLAY_STORE = InMemoryReplayStore()
_RISK_CRITICAL = Risk(90, "critical")
_RISK_HIGH = Risk(60, "high")
_RISK_UNMATCHED_MONITOR = Risk(30, "med")
_PARSED_KINDS = (body_mod.JSON, body_mod.FORM, body_mod.MULTIPART)
# what an OpenAPI operation's contract reads by media type (a malformed, too deep or skipped
# body has its own hit already)
_MEDIA_KINDS = (*_PARSED_KINDS, body_mod.NONE, body_mod.OPAQUE)


PhaseRecorder = Callable[[str, int, int], None]  # (phase, start_ns, end_ns), ns since the epoch
# (pending, canonical path, path parameters, parsed body value, webhook result), once prepared
PreparedRecorder = Callable[
    ["Pending", str, dict[str, str], Any, "webhook_mod.Verified | None"], None
]


@dataclass(frozen=True, slots=True)
class Phases:
    """The evaluators ``prepare`` calls, one per phase: the plain functions, or ``timed`` ones.

    Stored as instance slots (no method binding), so a call through ``PLAIN`` costs what the
    direct module-attribute call it replaces did.
    """

    canonicalize: Callable[..., Any] = canonicalize
    body: Callable[..., Any] = body_mod.parse
    vulnerability: Callable[..., Any] = vuln_mod.check
    limits: Callable[..., Any] = limits_mod.check
    contract: Callable[..., Any] = Contract.check
    webhook: Callable[..., Any] = webhook_mod.verify
    cel: Callable[..., Any] = cel_mod.evaluate
    on_phase: PhaseRecorder | None = None  # set by ``timed``: the replay claim reports here too
    on_prepared: PreparedRecorder | None = None  # set by ``record.recording``


PLAIN = Phases()


def timed(on_phase: PhaseRecorder, clock: Callable[[], int] = time.time_ns) -> Phases:
    """``Phases`` that report each phase's span to ``on_phase`` and otherwise do the same.

    "route" runs from path canonicalisation to the body parse (matching and route selection
    in between); every other phase is its evaluator's call.
    """
    route_start = [0]

    def canonical(path: str) -> Any:
        route_start[0] = clock()
        return canonicalize(path)

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                on_phase(name, start, clock())

        return run

    def body(*args: Any) -> Any:
        start = clock()
        on_phase("route", route_start[0], start)
        try:
            return body_mod.parse(*args)
        finally:
            on_phase("body", start, clock())

    return Phases(
        canonical,
        body,
        wrap("vulnerability", vuln_mod.check),
        wrap("limits", limits_mod.check),
        wrap("contract", Contract.check),
        wrap("webhook", webhook_mod.verify),
        wrap("cel", cel_mod.evaluate),
        on_phase,
    )


@dataclass(slots=True)
class Pending:
    """Everything decided except the replay claim."""

    policy: CompiledPolicy
    ctx: RequestContext
    route: CompiledRoute | None
    mode: str
    hits: list[RuleHit]
    advisory: set[int]  # indexes of hits that never block
    replay_key: str | None = None
    replay_ttl: int = 0
    replay_at: int = 0  # where the replay hit goes, to keep phase order


def prepare(
    policy: CompiledPolicy, ctx: RequestContext, now: float, phases: Phases = PLAIN
) -> Pending:
    request = ctx.request
    defaults = policy.defaults
    canonical = phases.canonicalize(request.path)
    method = request.method.upper()
    route: CompiledRoute | None = None
    params: dict[str, str] = {}
    if request.route_id is not None:
        route = policy.routes_by_id.get(request.route_id)
    found = policy.matcher.match(method, canonical.path)
    if found is not None and (route is None or found[0] is route):
        route, params = found
    hits: list[RuleHit] = []
    advisory: set[int] = set()
    if canonical.ambiguous is not None:
        hits.append(RuleHit(PATH_AMBIGUOUS, "high", canonical.ambiguous))
    elif canonical.semicolon and not _matrix_segments(route, canonical.path, params):
        hits.append(RuleHit(PATH_AMBIGUOUS, "high", SEMICOLON))
    if route is None:
        mode = defaults.mode
        limits = defaults.limits
        vulns = defaults.vulnerability
        action = defaults.unmatched_route_action
        if action != "allow":
            if action == "monitor":
                advisory.add(len(hits))
            hits.append(
                RuleHit(
                    ROUTE_UNMATCHED,
                    "med" if action == "monitor" else "high",  # as upstream scores them
                    f"no route matches {method[:16]} {canonical.path[:200]}",
                )
            )
    else:
        mode = route.mode
        limits = route.limits
        vulns = route.vulnerability
    body_options = defaults.body
    parsed = phases.body(
        request.body,
        request.content_type,
        limits.max_json_depth,
        limits.max_body_bytes,
        request.headers.get("content-encoding"),
        body_options,
    )
    if parsed.kind == body_mod.GRPC:  # frames: the route's method makes them its message
        parsed = grpc_body.message(
            parsed,
            route.grpc if route is not None else None,
            request.headers,
            request.body.partial,
            limits.max_json_depth,
            limits.max_body_bytes,
        )
    value = parsed.value if parsed.kind in _PARSED_KINDS else None
    # 1. vulnerability checks: every value a lenient upstream may read (``inspect``)
    if vulns.any_enabled:
        view = value if parsed.inspect is None else parsed.inspect
        phases.vulnerability(vulns, view, request.query, canonical.traversal, hits)
    # 2. limits
    phases.limits(limits, request.body, request.headers, parsed, hits)
    # 3. body and contract
    if parsed.kind == body_mod.MALFORMED:
        if body_options.malformed == "refuse":
            hits.append(RuleHit(BODY_MALFORMED, "high", parsed.error or "malformed body"))
    elif parsed.kind == body_mod.UNSUPPORTED:
        hits.append(RuleHit(BODY_ENCODING, "high", parsed.error or "content coding refused"))
    elif route is not None and (parsed.duplicates or parsed.lenient is not None):
        _ambiguous(route, parsed, body_options, hits)
    if parsed.problems:  # a gRPC message's unknown fields and constraint violations
        hits.extend(RuleHit(hit_id, "high", message[:300]) for hit_id, message in parsed.problems)
    elif route is not None and route.grpc is not None and not parsed.grpc:
        _not_grpc(route.grpc.path, parsed, request.content_type, hits)
    pending = Pending(policy, ctx, route, mode, hits, advisory)
    if route is None:
        if phases.on_prepared is not None:
            phases.on_prepared(pending, canonical.path, params, value, None)
        return pending
    contract = route.contract
    if contract is not None:
        if parsed.kind == body_mod.NONE and contract.body_optional:
            pass
        elif contract.bodies is not None:
            if parsed.kind in _MEDIA_KINDS:
                media = body_mod.media_type(request.content_type)
                phases.contract(contract, value, hits, request.body.redacted, parsed, media)
        elif (parsed.kind in _PARSED_KINDS and not parsed.sniffed) or parsed.kind == body_mod.NONE:
            phases.contract(contract, value, hits, request.body.redacted)
        elif parsed.kind == body_mod.OPAQUE or parsed.sniffed:
            hits.append(
                RuleHit(
                    SCHEMA_INVALID,
                    "high",
                    f"body is not JSON (content type {request.content_type or 'missing'!r})",
                )
            )
        if contract.parameters is not None:  # 3b. declared path/query/header parameters
            contract.parameters.check(params, request.query, request.headers, hits)
    # 4. webhook signature (5. replay is claimed after CEL, see module docstring)
    webhook = route.webhook
    verified = None
    if webhook is not None:
        verified = phases.webhook(webhook, request, parsed, now, hits)
        pending.replay_at = len(hits)
    # 6. CEL rules
    plan = route.cel
    if plan is not None:
        first = len(hits)
        view = cel_view(ctx, canonical.path, params, value, route, verified is not None)
        phases.cel(plan, view, hits)
        if len(hits) > first:  # usually no rule fires: no slice and enumerate to build
            for i, rule_hit in enumerate(hits[first:], first):
                for rule in plan.rules:
                    if rule.id == rule_hit.id and not rule.blocking:
                        advisory.add(i)
    if route.overrides:  # rules of type limit, contract, webhook-*: monitor ones never block
        for i, h in enumerate(hits):
            override = route.overrides.get(h.id)
            if override is not None and not override.blocking:
                advisory.add(i)
    if (
        verified is not None
        and webhook is not None
        and webhook.replay_protection
        and not (mode == ENFORCE and len(hits) > len(advisory))
    ):
        pending.replay_key = f"webhook:{route.id}:{verified.event_id}"
        pending.replay_ttl = webhook.replay_ttl
    if phases.on_prepared is not None:
        phases.on_prepared(pending, canonical.path, params, value, verified)
    return pending


def _ambiguous(
    route: CompiledRoute, parsed: Any, options: body_mod.BodyOptions, hits: list[RuleHit]
) -> None:
    """A body parsers read differently, on a route whose contract or CEL rules read it: the
    upstream's parser may see another value than the checks did, so it is refused.

    A repeated key (first or last wins, by framework): ``request.body.duplicateKey``. JSON
    declared as such that parses only leniently (a byte order mark, UTF-16/32, NaN, data after
    the value): ``request.body.malformed``. An OpenAPI form or multipart contract reads every
    value of a field already (a repeated field whose schema is not an array is its own
    contract hit), so only JSON is refused there. The detectors read every value either way.
    """
    contract = route.contract
    if parsed.kind == body_mod.JSON:
        if contract is None and route.cel is None:
            return
        if parsed.lenient is not None and not parsed.sniffed and options.malformed == "refuse":
            hits.append(
                RuleHit(
                    BODY_MALFORMED,
                    "high",
                    f"JSON that parsers read differently: {parsed.lenient}",
                )
            )
    elif contract is None or contract.bodies is not None:
        return
    if parsed.duplicates and options.duplicate_keys == "refuse":
        names = ", ".join(repr(n[:60]) for n in parsed.duplicates[:5])
        hits.append(
            RuleHit(
                BODY_DUPLICATE,
                "high",
                f"the body repeats {names}; upstreams differ on which value wins "
                "(defaults.body.duplicateKeys)",
            )
        )


def _matrix_segments(route: CompiledRoute | None, path: str, params: dict[str, str]) -> bool:
    """Every segment holding a ``;`` is the whole value of an OpenAPI ``style: matrix`` path
    parameter of the matched operation (which the contract then checks)."""
    checks = getattr(route.contract, "parameters", None) if route is not None else None
    if checks is None:
        return False
    matrix = {
        params[p.name]
        for p in checks.params
        if p.location == "path" and p.style == "matrix" and p.name in params
    }
    return all(seg in matrix for seg in path.split("/") if ";" in seg)


def _not_grpc(path: str, parsed: Any, content_type: str | None, hits: list[RuleHit]) -> None:
    """A gRPC route's body that is not a gRPC message (one the other checks did not refuse)."""
    if parsed.kind in (
        body_mod.MALFORMED,
        body_mod.TOO_DEEP,
        body_mod.SKIPPED,
        body_mod.UNSUPPORTED,
    ):
        return
    hits.append(
        RuleHit(
            MEDIA_TYPE,
            "high",
            f"{path[:200]} is a gRPC method: the body must be application/grpc or gRPC-Web, "
            f"not {(content_type or 'missing')[:80]!r}",
        )
    )


def cel_view(
    ctx: RequestContext,
    path: str,
    params: dict[str, str],
    body: Any,
    route: CompiledRoute,
    signature_valid: bool,
) -> cel_mod.RequestView:
    """What the route's CEL rules read: the request as matched, and the engine's own results."""
    webhook = route.webhook
    provider = webhook.provider if webhook is not None else ""
    return cel_mod.RequestView(ctx, path, params, body, route.id, provider, signature_valid)


def apply_claim(pending: Pending, claimed: bool | BaseException, fail_open: bool) -> None:
    """Record the outcome of the replay claim as a hit in phase order."""
    route = pending.route
    assert route is not None and route.webhook is not None
    webhook = route.webhook
    at = pending.replay_at
    if claimed is True:
        return
    if claimed is False:
        hit = RuleHit(webhook.replay_id, "high", "this event was already delivered (replay)")
        advisory = False
    else:
        detail = str(claimed)[:120] or type(claimed).__name__
        if fail_open:
            hit = RuleHit(webhook.unavailable_id, "low", f"replay store unavailable: {detail}")
            advisory = True
        else:
            hit = RuleHit(
                webhook.unavailable_id,
                "high",
                f"replay store unavailable, failing closed: {detail}",
            )
            advisory = False
    override = route.overrides.get(hit.id)
    if override is not None and not override.blocking:
        advisory = True
    pending.hits.insert(at, hit)
    pending.advisory = {i + 1 if i >= at else i for i in pending.advisory}
    if advisory:
        pending.advisory.add(at)


def finish(pending: Pending) -> Decision:
    policy = pending.policy
    route = pending.route
    hits = pending.hits
    # Positional (route_id, mode, policy_version, request_id): ~0.25 µs cheaper than keywords.
    meta = DecisionMetadata(
        route.id if route is not None else None, pending.mode, policy.version, pending.ctx.id
    )
    if not hits:
        return Decision(ALLOW, 200, "allowed", (), NO_RISK, meta)
    advisory = pending.advisory
    builtin = hits  # the checks' own ids decide the status, whatever a rule renamed them to
    if route is not None and route.overrides:
        hits = [_renamed(h, route.overrides.get(h.id)) for h in hits]
    if len(hits) == 1 and hits[0].id == ROUTE_UNMATCHED and advisory:
        risk = _RISK_UNMATCHED_MONITOR  # upstream's score for a monitored unmatched route
    elif any(h.severity == "critical" for h in hits):
        risk = _RISK_CRITICAL
    else:
        risk = _RISK_HIGH
    blocking = [h for i, h in enumerate(hits) if i not in advisory]
    if blocking and pending.mode == ENFORCE:
        defaults = policy.defaults
        ids = {h.id for i, h in enumerate(builtin) if i not in advisory}
        if route is not None and route.webhook is not None and route.webhook.unavailable_id in ids:
            status = 503
        elif limits_mod.BODY_MAX in ids:
            status = 413
        elif BODY_MALFORMED in ids or BODY_DUPLICATE in ids or REQUEST_MALFORMED in ids:
            status = defaults.malformed_status_code
        elif MEDIA_TYPE in ids or BODY_ENCODING in ids:
            status = 415
        else:
            status = defaults.block_status_code
        first = blocking[0]
        more = f" (+{len(blocking) - 1} more)" if len(blocking) > 1 else ""
        return Decision(
            BLOCK, status, f"{first.id}: {first.message}{more}", tuple(hits), risk, meta
        )
    if blocking:
        reason = f"monitor mode; would block: {', '.join(h.id for h in blocking)}"
    else:
        reason = f"allowed with advisory hits: {', '.join(h.id for h in hits)}"
    return Decision(MONITOR, 200, reason, tuple(hits), risk, meta)


def _renamed(hit: RuleHit, override: Any) -> RuleHit:
    """``hit`` under the id and severity of the rule that configures its check, if any."""
    if override is None:
        return hit
    return RuleHit(override.id, override.severity or hit.severity, hit.message)


def internal_error(policy: CompiledPolicy, ctx: Any, exc: BaseException) -> Decision:
    """Fail closed on an engine bug: a deterministic BLOCK instead of an exception."""
    hit = RuleHit(INTERNAL_ERROR, "critical", f"internal error: {type(exc).__name__}")
    request_id = getattr(ctx, "id", None)
    return Decision(
        BLOCK,
        500,
        hit.message,
        (hit,),
        _RISK_CRITICAL,
        DecisionMetadata(None, policy.defaults.mode, policy.version, request_id),
    )


def begin(
    policy: CompiledPolicy, ctx: RequestContext, now: float, phases: Phases = PLAIN
) -> Decision | Pending:
    """Decide up to the replay claim: the ``Decision``, or the ``Pending`` that needs a claim.

    Never raises. Most checks need no claim, so an async caller decides them without awaiting
    (no coroutine per check) and awaits ``claim_async`` only for a webhook delivery.
    """
    try:
        pending = prepare(policy, ctx, now, phases)
        if pending.replay_key is None:
            return finish(pending)
        return pending
    except Exception as exc:
        return internal_error(policy, ctx, exc)


def complete(pending: Pending, claimed: bool | BaseException, fail_open: bool) -> Decision:
    """The ``Decision`` once the claim ``begin`` asked for has answered (or failed); never raises."""
    try:
        apply_claim(pending, claimed, fail_open)
        return finish(pending)
    except Exception as exc:
        return internal_error(pending.policy, pending.ctx, exc)


def _claim(pending: Pending, replay_store: Any) -> Any:
    """Claim this delivery's event id: the store's answer, or an awaitable of it (async store)."""
    store = DEFAULT_REPLAY_STORE if replay_store is None else replay_store
    return store.claim(pending.replay_key, pending.replay_ttl)


def claim_sync(pending: Pending, replay_store: Any) -> bool | Exception:
    """The store's answer to ``pending``'s claim, or what it raised.

    An async store cannot be awaited here: its coroutine is closed and the store counts as
    unavailable.
    """
    try:
        result = _claim(pending, replay_store)
        if isinstance(result, Awaitable):
            close = getattr(result, "close", None)
            if close is not None:
                close()
            raise ReplayStoreUnavailable("an async replay store needs evaluate_async()")
        return bool(result)
    except Exception as exc:
        return exc


async def claim_async(pending: Pending, replay_store: Any) -> bool | Exception:
    """The (sync or async) store's answer to ``pending``'s claim, or what it raised."""
    try:
        result = _claim(pending, replay_store)
        if isinstance(result, Awaitable):
            result = await result
        return bool(result)
    except Exception as exc:
        return exc


def evaluate(
    policy: CompiledPolicy,
    ctx: RequestContext,
    *,
    replay_store: Any = None,
    replay_fail_open: bool = False,
    now: float | None = None,
    phases: Phases = PLAIN,
) -> Decision:
    """Decide one request. Never raises for any ``RequestContext`` content."""
    result = begin(policy, ctx, time.time() if now is None else now, phases)
    if isinstance(result, Pending):
        return complete(result, claim_sync(result, replay_store), replay_fail_open)
    return result


async def evaluate_async(
    policy: CompiledPolicy,
    ctx: RequestContext,
    *,
    replay_store: Any = None,
    replay_fail_open: bool = False,
    now: float | None = None,
    phases: Phases = PLAIN,
) -> Decision:
    """``evaluate`` for asyncio callers: awaits an ``AsyncReplayStore`` claim."""
    result = begin(policy, ctx, time.time() if now is None else now, phases)
    if isinstance(result, Pending):
        return complete(result, await claim_async(result, replay_store), replay_fail_open)
    return result
