"""Why a decision came out as it did: the phases that ran, where each hit comes from in the
policy (``file: path``), and what each CEL rule read.

Pure and off the request path: ``explain`` takes a decision already made (by ``evaluate`` or
the server) and re-derives what the pipeline saw (route match, canonical path, parameters,
parsed body) to report it; it never claims a webhook replay id and never changes a decision.
Used by ``extauthz explain``, ``extauthz evaluate --explain`` and ``/v1/evaluate?explain=1``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..context import RequestContext
from ..decision import Decision
from . import body as body_mod
from . import cel as cel_mod
from .canonical import canonicalize
from .model import CompiledPolicy, CompiledRoute
from .pipeline import BODY_MALFORMED, INTERNAL_ERROR, PATH_AMBIGUOUS, ROUTE_UNMATCHED, cel_view

PHASES = ("route", "vulnerability", "limits", "contract", "webhook", "replay", "cel")
MISSING = "<missing>"
_VULN_NAMES = {
    "prototype_pollution": "prototypePollution",
    "path_traversal": "pathTraversal",
    "ssrf_internal": "ssrfInternal",
    "command_injection": "commandInjection",
    "nosql_injection": "nosqlInjection",
    "sql_injection": "sqlInjection",
    "xss": "xss",
}


@dataclass(frozen=True, slots=True)
class PhaseTrace:
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


def _show(value: Any) -> str:
    if value == MISSING:
        return MISSING
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 200 else text[:200] + "…"


def _at(policy: CompiledPolicy, path: str | None) -> str | None:
    return f"{policy.source}: {path}" if path else None


def _route_for(
    policy: CompiledPolicy, ctx: RequestContext, decision: Decision, path: str
) -> tuple[CompiledRoute | None, dict[str, str]]:
    route_id = decision.metadata.route_id
    route = policy.routes_by_id.get(route_id) if route_id else None
    found = policy.matcher.match(ctx.request.method.upper(), path)
    if found is not None and (route is None or found[0] is route):
        return found[0], dict(found[1])
    return route, {}


def _builtin(hit_id: str, route: CompiledRoute | None) -> str:
    """The built-in id behind ``hit_id`` (a rule that configures a check renames its hits)."""
    if route is None:
        return hit_id
    return next((b for b, o in route.overrides.items() if o.id == hit_id), hit_id)


def _signature_held(route: CompiledRoute, decision: Decision) -> bool:
    """Whether the engine's own signature check passed: no hit of that check (renamed or not)."""
    if route.webhook is None:
        return False
    failed = {route.webhook.signature_id}  # an id, not a signature: a set lookup, no equality
    return not any(_builtin(h.id, route) in failed for h in decision.rule_hits)


def _phase_of(hit_id: str, route: CompiledRoute | None) -> str:
    hit_id = _builtin(hit_id, route)
    if hit_id in (PATH_AMBIGUOUS, ROUTE_UNMATCHED):
        return "route"
    if hit_id == INTERNAL_ERROR or hit_id.startswith("server."):
        return "engine"
    if route is not None:
        if route.cel is not None and any(r.id == hit_id for r in route.cel.rules):
            return "cel"
        webhook = route.webhook
        if webhook is not None:
            if hit_id in (webhook.replay_id, webhook.unavailable_id):
                return "replay"
            if hit_id in (webhook.signature_id, webhook.event_type_id):
                return "webhook"
    prefix = hit_id.split(".", 1)[0]
    return {
        "vulnerability": "vulnerability",
        "limit": "limits",
        "contract": "contract",
        "webhook": "webhook",
        "request": "contract" if hit_id == BODY_MALFORMED else "route",
    }.get(prefix, "rule")


def _location_of(
    policy: CompiledPolicy, route: CompiledRoute | None, hit: str, phase: str
) -> str | None:
    locs = route.locations if route is not None else {}
    if hit in locs:
        return _at(policy, locs[hit])
    key = {"vulnerability": "@vulnerability", "limits": "@limits", "contract": "@contract",
           "webhook": "@webhook", "replay": "@webhook", "route": "@route"}.get(phase)  # fmt: skip
    if key is not None and key in locs:
        return _at(policy, locs[key])
    if phase == "vulnerability":
        return _at(policy, "defaults.vulnerabilityChecks")
    if phase == "limits":
        return _at(policy, "defaults.limits")
    if hit == ROUTE_UNMATCHED:
        return _at(policy, "defaults.unmatchedRouteAction")
    return None


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


def explain(policy: CompiledPolicy, ctx: RequestContext, decision: Decision) -> Explanation:
    """Explain ``decision`` (made for ``ctx`` under ``policy``); never raises for bad input."""
    request = ctx.request
    canonical = canonicalize(request.path)
    route, params = _route_for(policy, ctx, decision, canonical.path)
    defaults = policy.defaults
    limits = route.limits if route is not None else defaults.limits
    vulns = route.vulnerability if route is not None else defaults.vulnerability
    locs = route.locations if route is not None else {}
    notes: list[str] = []
    if decision.metadata.policy_version not in (None, policy.version):
        notes.append(
            f"the decision was made under policy {decision.metadata.policy_version}; "
            f"this is {policy.version}: locations may have moved"
        )
    if route is not None:
        route_detail = f"matched {route.id!r} ({'|'.join(route.methods)} {route.pattern.text})"
    else:
        route_detail = f"no route matched; unmatchedRouteAction {defaults.unmatched_route_action}"
    enabled = [n for a, n in _VULN_NAMES.items() if getattr(vulns, a).enabled]
    webhook = route.webhook if route is not None else None
    plan = route.cel if route is not None else None
    contract = route.contract if route is not None else None
    phases = (
        PhaseTrace("route", True, route_detail, _at(policy, locs.get("@route"))),
        PhaseTrace(
            "vulnerability",
            bool(vulns.any_enabled),
            ", ".join(enabled) if enabled else "every check off",
            _at(policy, locs.get("@vulnerability", "defaults.vulnerabilityChecks")),
        ),
        PhaseTrace(
            "limits",
            True,
            f"maxBodyBytes {limits.max_body_bytes}, maxJsonDepth {limits.max_json_depth}, "
            f"maxArrayLength {limits.max_array_length}",
            _at(policy, locs.get("@limits", "defaults.limits")),
        ),
        PhaseTrace(
            "contract",
            contract is not None,
            f"schema {contract.schema_source}" if contract is not None else "no contract",
            _at(policy, locs.get("@contract")),
        ),
        PhaseTrace(
            "webhook",
            webhook is not None,
            f"{webhook.provider} signature" if webhook is not None else "no webhook",
            _at(policy, locs.get("@webhook")),
        ),
        PhaseTrace(
            "replay",
            webhook is not None and webhook.replay_protection,
            "event id claimed once nothing else blocks"
            if webhook is not None and webhook.replay_protection
            else "no replay protection",
            _at(policy, locs.get("@webhook")),
        ),
        PhaseTrace(
            "cel",
            plan is not None,
            f"{len(plan.rules)} rule(s)" if plan is not None else "no rules",
            _at(policy, locs.get("@rules")),
        ),
    )
    hits = []
    for h in decision.rule_hits:
        phase = _phase_of(h.id, route)
        hits.append(
            HitTrace(h.id, h.severity, h.message, phase, _location_of(policy, route, h.id, phase))
        )
    cel_traces: list[CelTrace] = []
    if plan is not None:
        parsed = body_mod.parse(
            request.body, request.content_type, limits.max_json_depth, limits.max_body_bytes
        )
        value = parsed.value if parsed.kind in (body_mod.JSON, body_mod.FORM) else None
        view = cel_view(ctx, canonical.path, params, value, route, _signature_held(route, decision))
        hit_ids = {h.id for h in decision.rule_hits}
        for rule in plan.rules:
            cel_traces.append(
                CelTrace(
                    rule.id,
                    rule.expr,
                    _at(policy, locs.get(rule.id)),
                    _cel_inputs(rule, view),
                    rule.id in hit_ids,
                    rule.blocking,
                )
            )
    return Explanation(
        decision=decision,
        policy_source=policy.source,
        policy_version=policy.version,
        route_id=route.id if route is not None else None,
        canonical_path=canonical.path,
        params=tuple(sorted(params.items())),
        phases=phases,
        hits=tuple(hits),
        cel=tuple(cel_traces),
        notes=tuple(notes),
    )
