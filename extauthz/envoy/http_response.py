"""``Decision`` → the answer Envoy's HTTP-mode ext_authz acts on: a pure function, no I/O.

    ALLOW / MONITOR → 200 with the x-contractshield-decision, -route, -subject and -tenant
                      headers (``allowed_upstream_headers``: Envoy overwrites client copies)
                      and ``x-envoy-auth-headers-to-remove`` naming those we have no value for,
                      so a client's spoofed copy never reaches the upstream
    BLOCK           → the decision's status (never 200, which Envoy reads as OK: then 403) with
                      {"error", "code", "ruleHits", "requestId"} as application/json
                      (``allowed_client_headers``: content-type, -decision, -decision-id)

Every answer carries ``x-contractshield-decision-id`` (and ALLOW the policy version, MONITOR
its status and rule ids): ``dynamic_metadata_from_headers`` turns the ``METADATA_HEADERS``
among them into dynamic metadata for access logs,
``%DYNAMIC_METADATA(envoy.filters.http.ext_authz:x-contractshield-decision-id)%``.
The same table as ``envoy.response`` (gRPC mode), in HTTP's words.
"""

from __future__ import annotations

import uuid

from .._http import HttpOut
from .._json import COMPACT
from ..context import Identity
from ..decision import ALLOW, Decision
from .grpc_status import grpc_denial
from .response import (
    HEADER_DECISION,
    HEADER_DECISION_ID,
    HEADER_ROUTE,
    HEADER_SUBJECT,
    HEADER_TENANT,
    POLICY_VIOLATION,
)

HEADERS_TO_REMOVE = "x-envoy-auth-headers-to-remove"
HEADER_POLICY_VERSION = "x-contractshield-policy-version"
HEADER_STATUS = "x-contractshield-status"
HEADER_RULE_HITS = "x-contractshield-rule-hits"
HEADER_CACHE = "x-contractshield-cache"
JSON = "application/json"
#: The answer headers Envoy turns into dynamic metadata (``dynamic_metadata_from_headers`` in
#: ``envoy/envoy-http.yaml`` and ``extauthz envoy-config --authz-mode http``): the action and
#: decision id of every answer, MONITOR's status and rule ids. Not a prefix match on all of
#: ours: each metadata entry costs Envoy ~3 µs a check (``bench/envoy_bench.py``, docs/envoy.md).
METADATA_HEADERS = (HEADER_DECISION, HEADER_DECISION_ID, HEADER_STATUS, HEADER_RULE_HITS)


def decision_to_http(
    decision: Decision,
    identity: Identity | None = None,
    *,
    error_code: str = POLICY_VIOLATION,
    cacheable: bool = True,
    grpc: bool = False,
) -> HttpOut:
    """The HTTP answer for ``decision``; ``identity`` feeds the trusted identity headers;
    ``grpc``: the request was gRPC, so a denial carries its gRPC status (``grpc_status``)."""
    meta = decision.metadata
    decision_id = meta.request_id or uuid.uuid4().hex
    if not decision.allowed:
        body = {
            "error": decision.reason or "request blocked by policy",
            "code": error_code,
            "ruleHits": list(decision.rule_ids),
            "requestId": decision_id,
        }
        status = decision.status_code if decision.status_code != 200 else 403
        ours = ((HEADER_DECISION, "BLOCK"), (HEADER_DECISION_ID, decision_id))
        if grpc:  # a gRPC status for a gRPC client, instead of JSON it would never parse
            headers, text = grpc_denial(decision)
            return HttpOut(status, text.encode(), "text/plain", ours + headers)
        return HttpOut(status, COMPACT.encode(body).encode(), JSON, ours)
    subject = tenant = None
    if identity is not None and identity.authenticated:
        subject, tenant = identity.subject, identity.tenant
    headers = [(HEADER_DECISION, decision.action), (HEADER_DECISION_ID, decision_id)]
    remove = []
    trusted = ((HEADER_ROUTE, meta.route_id), (HEADER_SUBJECT, subject), (HEADER_TENANT, tenant))
    for name, value in trusted:
        if value:
            # the check ``_header_value`` starts with, inline: a claim is almost always printable
            headers.append((name, value if value.isprintable() else _header_value(value)))
        else:
            remove.append(name)
    if remove:
        headers.append((HEADERS_TO_REMOVE, ",".join(remove)))
    if meta.policy_version:
        headers.append((HEADER_POLICY_VERSION, meta.policy_version))
    if not cacheable:
        headers.append((HEADER_CACHE, "no-store"))
    if decision.action != ALLOW:  # MONITOR: what would have been denied, for the logs
        headers.append((HEADER_STATUS, str(decision.status_code)))
        headers.append((HEADER_RULE_HITS, ",".join(decision.rule_ids)))
    return HttpOut(200, b"", None, tuple(headers))


def _header_value(value: str) -> str:
    """A claim as a header value (written as UTF-8, as gRPC mode sends it): control
    characters dropped, so a claim can never end the header (no header injection)."""
    if value.isprintable():
        return value
    return "".join(c for c in value if c.isprintable())
