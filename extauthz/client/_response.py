"""``CheckResponse`` → ``Decision``, for ContractShield and for any other ext_authz server.

gRPC status OK means the request may go on: ALLOW, or MONITOR when ContractShield's summary
(``action``) or the ``x-contractshield-decision`` header says so. Anything else is a denial
(Envoy's rule): BLOCK with the denied response's HTTP status (403 when unset, as Envoy does)
and, when the body is ContractShield's JSON ``{"error", "code", "ruleHits", "requestId"}``, its
reason, rule ids and request id. ContractShield also puts a summary in ``dynamic_metadata``
(action, decisionId, routeId, reason, ruleHits, riskScore, policyVersion, cache), read when
present.

``Verdict.cacheable`` is True only for answers that say they are a pure function of the
request and a policy version: an OK response carrying ``policyVersion`` and not marked
``cache: no-store`` (decisions that depend on server state, such as webhook replay
protection). Answers from other ext_authz servers are never cached: we cannot know what
they depend on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from ..decision import ALLOW, BLOCK, MONITOR, Decision, DecisionMetadata, Risk, RuleHit

DECISION_HEADER = "x-contractshield-decision"
ROUTE_HEADER = "x-contractshield-route"
DECISION_ID_HEADER = "x-contractshield-decision-id"
DEFAULT_DENY_STATUS = 403
NO_STORE = "no-store"
_SEVERITIES = frozenset({"low", "med", "high", "critical"})
_LEVELS = frozenset({"none", "low", "med", "high", "critical"})


@dataclass(slots=True, frozen=True)
class Verdict:
    decision: Decision
    policy_version: str | None
    cacheable: bool


def _header_values(options: Iterable[Any], wanted: frozenset[str]) -> dict[str, str]:
    """The ``wanted`` headers' values (names lower-cased); the others are not converted."""
    out: dict[str, str] = {}
    for opt in options:
        h = opt.header
        key = h.key.lower()
        if key in wanted:
            out[key] = h.value or h.raw_value.decode("utf-8", "replace")
    return out


def _plain(v: Any) -> Any:
    """``google.protobuf.Value`` → Python (faster than ``MessageToDict`` on the miss path)."""
    kind = v.WhichOneof("kind")
    if kind == "string_value":
        return v.string_value
    if kind == "number_value":
        return v.number_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "list_value":
        return [_plain(x) for x in v.list_value.values]
    if kind == "struct_value":
        return {k: _plain(x) for k, x in v.struct_value.fields.items()}
    return None


def _summary(resp: CheckResponse) -> Mapping[str, Any]:
    fields = resp.dynamic_metadata.fields
    if not fields and resp.HasField("ok_response"):
        fields = resp.ok_response.dynamic_metadata.fields
    # keys then ``[key]``: the map's ``items()`` is a pure-Python generator (twice the cost)
    return {k: _plain(fields[k]) for k in fields}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _rule_hits(items: Any) -> tuple[RuleHit, ...]:
    """Rule ids (ContractShield sends ids only; severity unknown → "high") or full hits."""
    if not isinstance(items, list):
        return ()
    hits: list[RuleHit] = []
    for item in items:
        if isinstance(item, str):
            hits.append(RuleHit(item, "high", ""))
        elif isinstance(item, Mapping) and isinstance(item.get("id"), str):
            sev = item.get("severity")
            hits.append(
                RuleHit(
                    item["id"],
                    sev if sev in _SEVERITIES else "high",
                    str(item.get("message") or ""),
                )
            )
    return tuple(hits)


def _risk(summary: Mapping[str, Any]) -> Risk:
    """The score the server reported; the level only when it says so (never guessed)."""
    score = summary.get("riskScore")
    level = summary.get("riskLevel")
    if not isinstance(score, int | float) or isinstance(score, bool):
        return Risk()
    return Risk(int(score), level if level in _LEVELS else "none")


def to_verdict(resp: CheckResponse) -> Verdict:
    """Map one response; never raises for any ``CheckResponse``."""
    summary = _summary(resp)
    if resp.status.code == 0:
        return _ok(resp, summary)
    return Verdict(_denied(resp, summary), _str(summary.get("policyVersion")), False)


_OK_HEADERS = frozenset({DECISION_HEADER, ROUTE_HEADER, DECISION_ID_HEADER})
_OK_ACTIONS = (ALLOW, MONITOR)


def _ok(resp: CheckResponse, summary: Mapping[str, Any]) -> Verdict:
    action = summary.get("action")
    route_id = _str(summary.get("routeId"))
    request_id = _str(summary.get("decisionId"))
    if action not in _OK_ACTIONS or route_id is None or request_id is None:
        # Not all in ContractShield's summary (another ext_authz server, an unmatched route):
        # the answer's headers. Read only then: each header costs ~1 µs of upb wrappers.
        headers = _header_values(resp.ok_response.headers, _OK_HEADERS)
        if action not in _OK_ACTIONS:
            action = headers.get(DECISION_HEADER, "").upper()
            if action not in _OK_ACTIONS:
                action = ALLOW
        route_id = route_id or headers.get(ROUTE_HEADER)
        request_id = request_id or headers.get(DECISION_ID_HEADER)
    version = _str(summary.get("policyVersion"))
    decision = Decision(
        action=action,  # type: ignore[arg-type]
        status_code=200,
        reason=str(summary.get("reason") or ""),
        rule_hits=_rule_hits(summary.get("ruleHits")),
        risk=_risk(summary),
        metadata=DecisionMetadata(
            route_id=route_id,
            mode=_str(summary.get("mode")),
            policy_version=version,
            request_id=request_id,
        ),
    )
    cacheable = version is not None and summary.get("cache") != NO_STORE
    return Verdict(decision, version, cacheable)


_DENIED_HEADERS = frozenset({ROUTE_HEADER, DECISION_ID_HEADER})


def _denied(resp: CheckResponse, summary: Mapping[str, Any]) -> Decision:
    denied = None
    if resp.HasField("denied_response"):
        denied = resp.denied_response
    elif resp.HasField("error_response"):
        denied = resp.error_response
    status = DEFAULT_DENY_STATUS
    body: Any = None
    headers: dict[str, str] = {}
    if denied is not None:
        status = int(denied.status.code) or DEFAULT_DENY_STATUS
        headers = _header_values(denied.headers, _DENIED_HEADERS)
        if denied.body:
            try:
                body = json.loads(denied.body)
            except (ValueError, RecursionError):
                body = denied.body
    data: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    reason = (
        _str(data.get("error"))
        or _str(summary.get("reason"))
        or (body.strip()[:200] if isinstance(body, str) and body.strip() else None)
        or resp.status.message
        or "denied by the policy decision point"
    )
    hits = data.get("ruleHits")
    return Decision(
        action=BLOCK,
        status_code=status,
        reason=reason,
        rule_hits=_rule_hits(hits if hits is not None else summary.get("ruleHits")),
        risk=_risk(summary),
        metadata=DecisionMetadata(
            route_id=_str(summary.get("routeId")) or headers.get(ROUTE_HEADER),
            mode=_str(summary.get("mode")),
            policy_version=_str(summary.get("policyVersion")),
            request_id=_str(data.get("requestId"))
            or _str(summary.get("decisionId"))
            or headers.get(DECISION_ID_HEADER),
        ),
    )
