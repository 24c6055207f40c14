"""Why a decision came out as it did: the phases that ran, where each hit comes from in the
policy (``file: path``), and what each CEL rule read.

Pure and off the request path: ``explain`` reads what the pipeline recorded deciding the
request (``record.Record``: route match, canonical path, parameters, the phases that ran, each
hit's phase, the view the CEL rules read) and the catalogue (``checks``: phase names, where
each check is configured); it never claims a webhook replay id and never changes a decision.
Used by ``extauthz explain``, ``extauthz evaluate --explain`` and ``/v1/evaluate?explain=1``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..context import RequestContext
from ..decision import Decision
from . import cel as cel_mod
from . import checks
from . import record as record_mod
from .checks import CEL, CONTRACT, LIMITS, PHASES, REPLAY, ROUTE, RULE, VULNERABILITY, WEBHOOK
from .model import CompiledPolicy, CompiledRoute

__all__ = ["MISSING", "PHASES", "CelTrace", "Explanation", "HitTrace", "PhaseTrace", "explain"]


@dataclass(frozen=True, slots=True)
class PhaseTrace:
    """One phase: whether it ran for this request, what it was set to check, and where."""

    name: str
    ran: bool
    detail: str
    location: str | None = None


@dataclass(frozen=True, slots=True)
class HitTrace:
    id: str
    severity: str
    message: str
    phase: str
    location: str | None  # "policy.yaml: routes[2].rules[0]"


@dataclass(frozen=True, slots=True)
class CelTrace:
    id: str
    expr: str
    location: str | None
    inputs: tuple[tuple[str, Any], ...]  # ("identity.tenant", "acme"), ...
    hit: bool
    blocking: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    decision: Decision
    policy_source: str
    policy_version: str
    route_id: str | None
    canonical_path: str
    params: tuple[tuple[str, str], ...]
    phases: tuple[PhaseTrace, ...]
    hits: tuple[HitTrace, ...]
    cel: tuple[CelTrace, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "decisionId": self.decision.metadata.request_id,
            "action": self.decision.action,
            "statusCode": self.decision.status_code,
            "policy": {"source": self.policy_source, "version": self.policy_version},
            "routeId": self.route_id,
            "canonicalPath": self.canonical_path,
            "params": dict(self.params),
            "phases": [
                {"name": p.name, "ran": p.ran, "detail": p.detail, "location": p.location}
                for p in self.phases
            ],
            "hits": [
                {
                    "id": h.id,
                    "severity": h.severity,
                    "message": h.message,
                    "phase": h.phase,
                    "location": h.location,
                }
                for h in self.hits
            ],
            "cel": [
                {
                    "id": c.id,
                    "expr": c.expr,
                    "location": c.location,
                    "inputs": {name: value for name, value in c.inputs},
                    "hit": c.hit,
                    "blocking": c.blocking,
                }
                for c in self.cel
            ],
            "notes": list(self.notes),
        }

    def to_text(self) -> str:
        d = self.decision
        lines = [
            f"decision {d.metadata.request_id or '-'}: {d.action} {d.status_code} ({d.reason})",
            f"policy {self.policy_source} ({self.policy_version}), route "
            f"{self.route_id or '(none)'}, path {self.canonical_path}"
            + (f", params {dict(self.params)}" if self.params else ""),
            "phases:",
        ]
        for p in self.phases:
            mark = "ran    " if p.ran else "skipped"
            where = f"  [{p.location}]" if p.location else ""
            lines.append(f"  {mark} {p.name:<13} {p.detail}{where}")
        lines.append("hits:" if self.hits else "hits: none")
        for h in self.hits:
            lines.append(f"  {h.id} ({h.severity}, {h.phase}) at {h.location or '(built in)'}")
            lines.append(f"      {h.message}")
        if self.cel:
            lines.append("cel rules:")
        for c in self.cel:
            verdict = "HIT" if c.hit else "held"
            kind = "" if c.blocking else " (monitor)"
            lines.append(f"  {c.id}{kind}: {verdict} at {c.location or '?'}")
            lines.append(f"      expr: {c.expr}")
            for name, value in c.inputs:
                lines.append(f"      {name} = {_show(value)}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


MISSING = "<missing>"  # how an input the request lacks is shown


def _show(value: Any) -> str:
    if value == MISSING:
        return MISSING
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 200 else text[:200] + "…"


def _at(policy: CompiledPolicy, path: str | None) -> str | None:
    return f"{policy.source}: {path}" if path else None


def _builtin(hit_id: str, route: CompiledRoute | None) -> str:
    """The built-in id behind ``hit_id`` (a rule that configures a check renames its hits)."""
    if route is None:
        return hit_id
    return next((b for b, o in route.overrides.items() if o.id == hit_id), hit_id)


def _known_phase(hit_id: str, route: CompiledRoute | None) -> str:
    """The phase of a built-in ``hit_id`` the record did not see (the replay claim of a
    decision made elsewhere, the server's own failure): the catalogue's, or the route's."""
    phase = checks.phase_of(hit_id)
    if phase is not None:
        return phase
    if route is not None:
        if route.cel is not None and any(r.id == hit_id for r in route.cel.rules):
            return CEL
        if route.webhook is not None:
            phase = checks.webhook.hit_ids(route.webhook.provider).get(hit_id)
            if phase is not None:
                return phase
    return RULE


def _location_of(
    policy: CompiledPolicy, route: CompiledRoute | None, hit: str, builtin: str, phase: str
) -> str | None:
    locs = route.locations if route is not None else {}
    if hit in locs:
        return _at(policy, locs[hit])
    section = "@" + (WEBHOOK if phase == REPLAY else phase)  # route sections by phase name
    if section in locs:
        return _at(policy, locs[section])
    check = checks.check_of(builtin)
    return _at(policy, check.location if check is not None else checks.DEFAULT_LOCATION.get(phase))


def _cel_inputs(rule: cel_mod.CelRule, view: cel_mod.RequestView) -> tuple[tuple[str, Any], ...]:
    _, needs = cel_mod.compile_expr(rule.expr)
    seen: dict[str, Any] = {}
    for (var, fld, _flat), keys in sorted(needs.items()):
        try:
            value = cel_mod._GETTERS[var][fld](view)
        except Exception as exc:  # an input that cannot be read is shown as such
            seen[f"{var}.{fld}"] = f"<unreadable: {type(exc).__name__}>"
            continue
        if keys is None:
            seen[f"{var}.{fld}"] = value
        else:
            for key in sorted(keys):
                got = value.get(key, MISSING) if isinstance(value, dict) else MISSING
                seen[f"{var}.{fld}.{key}"] = got
    return tuple(seen.items())


def _phases(policy: CompiledPolicy, rec: record_mod.Record) -> tuple[PhaseTrace, ...]:
    """Every phase, whether it ran (as recorded) and what it was set to check."""
    route = rec.route
    defaults = policy.defaults
    limits = route.limits if route is not None else defaults.limits
    vulns = route.vulnerability if route is not None else defaults.vulnerability
    locs = route.locations if route is not None else {}
    webhook = route.webhook if route is not None else None
    plan = route.cel if route is not None else None
    contract = route.contract if route is not None else None
    replay = webhook is not None and webhook.replay_protection
    if not rec.complete:
        route_detail = "not recorded: the engine failed before the pipeline finished"
    elif route is not None:
        route_detail = f"matched {route.id!r} ({'|'.join(route.methods)} {route.pattern.text})"
    else:
        route_detail = f"no route matched; unmatchedRouteAction {defaults.unmatched_route_action}"
    enabled = vulns.enabled_names()
    details = {  # phase -> (detail, where in the policy)
        ROUTE: (route_detail, locs.get("@route")),
        VULNERABILITY: (
            ", ".join(enabled) if enabled else "every check off",
            locs.get("@vulnerability", checks.DEFAULT_LOCATION[VULNERABILITY]),
        ),
        LIMITS: (
            ", ".join(f"{c.name} {getattr(limits, c.attr)}" for c in checks.LIMIT_CHECKS),
            locs.get("@limits", checks.DEFAULT_LOCATION[LIMITS]),
        ),
        CONTRACT: (_contract_detail(route, contract), locs.get("@contract")),
        WEBHOOK: (
            f"{webhook.provider} signature" if webhook is not None else "no webhook",
            locs.get("@webhook"),
        ),
        REPLAY: (
            "event id claimed once nothing else blocks" if replay else "no replay protection",
            locs.get("@webhook"),
        ),
        CEL: (f"{len(plan.rules)} rule(s)" if plan is not None else "no rules", locs.get("@rules")),
    }
    ran = set(rec.ran)
    if route is not None and route.grpc is not None and rec.complete:
        ran.add(CONTRACT)  # the method's message is decoded and checked with the body
    return tuple(
        PhaseTrace(name, name in ran, details[name][0], _at(policy, details[name][1]))
        for name in PHASES
    )


def _contract_detail(route: Any, contract: Any) -> str:
    parts = []
    grpc = route.grpc if route is not None else None
    if grpc is not None:
        parts.append(f"gRPC method {grpc.path}")
    if contract is not None:
        parts.append(f"schema {contract.schema_source}")
    return ", ".join(parts) or "no contract"


def explain(
    policy: CompiledPolicy,
    ctx: RequestContext,
    decision: Decision,
    record: record_mod.Record | None = None,
    *,
    now: float | None = None,
) -> Explanation:
    """Explain ``decision`` (made for ``ctx`` under ``policy``); never raises for bad input.

    ``record``: what the decision's own evaluation recorded (``record.recording``). Without
    one, the pipeline runs once more to record (at ``now``; never claiming a replay id).
    """
    rec = record if record is not None else record_mod.record(policy, ctx, now)
    route = rec.route
    notes: list[str] = []
    if decision.metadata.policy_version not in (None, policy.version):
        notes.append(
            f"the decision was made under policy {decision.metadata.policy_version}; "
            f"this is {policy.version}: locations may have moved"
        )
    recorded = rec.phases_by_id()
    hits = []
    for h in decision.rule_hits:
        builtin = _builtin(h.id, route)
        phase = recorded.get(builtin) or _known_phase(builtin, route)
        hits.append(
            HitTrace(
                h.id,
                h.severity,
                h.message,
                phase,
                _location_of(policy, route, h.id, builtin, phase),
            )
        )
    cel_traces: list[CelTrace] = []
    plan = route.cel if route is not None else None
    if plan is not None and rec.cel_view is not None:
        locs = route.locations if route is not None else {}
        hit_ids = {h.id for h in decision.rule_hits}
        for rule in plan.rules:
            cel_traces.append(
                CelTrace(
                    rule.id,
                    rule.expr,
                    _at(policy, locs.get(rule.id)),
                    _cel_inputs(rule, rec.cel_view),
                    rule.id in hit_ids,
                    rule.blocking,
                )
            )
    return Explanation(
        decision=decision,
        policy_source=policy.source,
        policy_version=policy.version,
        route_id=route.id if route is not None else None,
        canonical_path=rec.canonical_path,
        params=tuple(sorted(rec.params.items())),
        phases=_phases(policy, rec),
        hits=tuple(hits),
        cel=tuple(cel_traces),
        notes=tuple(notes),
    )
