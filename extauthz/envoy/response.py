"""``Decision`` → Envoy ``CheckResponse``: a pure function, no I/O.

    ALLOW   → OK; request headers for the upstream: x-contractshield-decision, -route,
              -subject and -tenant (overwritten; client-sent copies of the identity headers are
              removed when we have no value, so a client can never spoof them)
    MONITOR → as ALLOW, plus the decision summary in dynamic metadata
    BLOCK   → PERMISSION_DENIED + DeniedHttpResponse: the decision's status code and
              {"error", "code", "ruleHits", "requestId"} as application/json

Every response carries ``decisionId`` in dynamic metadata (namespace ``envoy.filters.http.
ext_authz`` for access logs: ``%DYNAMIC_METADATA(envoy.filters.http.ext_authz:decisionId)%``).
Nothing secret is ever copied into a response: only rule ids, the reason and our own ids.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import (
    CheckResponse,
    DeniedHttpResponse,
)
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.protobuf.struct_pb2 import Struct
from google.rpc.status_pb2 import Status

from ..context import Identity
from ..decision import MONITOR, Decision

GRPC_OK = 0
GRPC_PERMISSION_DENIED = 7

HEADER_DECISION = "x-contractshield-decision"
HEADER_ROUTE = "x-contractshield-route"
HEADER_SUBJECT = "x-contractshield-subject"
HEADER_TENANT = "x-contractshield-tenant"
HEADER_DECISION_ID = "x-contractshield-decision-id"
# Dynamic-metadata keys for the client SDK's cache (docs/client.md): the policy version that
# decided, and "no-store" when the decision depends on more than the request (replay state).
META_POLICY_VERSION = "policyVersion"
META_CACHE = "cache"

# Error codes in denial bodies (stable, documented in docs/envoy.md).
POLICY_VIOLATION = "POLICY_VIOLATION"
INVALID_REQUEST = "INVALID_REQUEST"
INTERNAL_ERROR = "INTERNAL_ERROR"

_OVERWRITE = HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD


def _header(key: str, value: str) -> HeaderValueOption:
    return HeaderValueOption(header=HeaderValue(key=key, value=value), append_action=_OVERWRITE)


# Constant protos built once; repeated-field ``append`` copies them into each response.
_DECISION_HEADERS = {
    action: _header(HEADER_DECISION, action) for action in ("ALLOW", "MONITOR", "BLOCK")
}
_JSON_CONTENT_TYPE = HeaderValueOption(
    header=HeaderValue(key="content-type", value="application/json"), append_action=_OVERWRITE
)
_BLOCK_DECISION_HEADER = _DECISION_HEADERS["BLOCK"]


def decision_to_check_response(
    decision: Decision,
    identity: Identity | None = None,
    *,
    error_code: str = POLICY_VIOLATION,
    cacheable: bool = True,
) -> CheckResponse:
    """Build the response Envoy acts on; ``identity`` feeds the trusted identity headers.

    ``cacheable=False`` marks an allowed decision ``no-store`` for the client SDK's cache.
    """
    decision_id = decision.metadata.request_id or uuid.uuid4().hex
    if decision.allowed:
        response = _ok(decision, identity, decision_id)
        _cache_metadata(response.dynamic_metadata, decision, cacheable)
        return response
    return _denied(decision, decision_id, error_code)


def _ok(decision: Decision, identity: Identity | None, decision_id: str) -> CheckResponse:
    # Built in place: constructor arguments copy sub-messages and the Struct mapping helpers
    # are slow; this is the hot path of every allowed request.
    response = CheckResponse()
    response.status.SetInParent()  # code OK
    ok = response.ok_response
    headers = ok.headers
    headers.append(
        _DECISION_HEADERS.get(decision.action) or _header(HEADER_DECISION, decision.action)
    )
    remove = ok.headers_to_remove
    route_id = decision.metadata.route_id
    if route_id:
        headers.append(_cached_header(HEADER_ROUTE, route_id))
    else:
        remove.append(HEADER_ROUTE)
    authenticated = identity is not None and identity.authenticated
    subject = identity.subject if authenticated else None  # type: ignore[union-attr]
    tenant = identity.tenant if authenticated else None  # type: ignore[union-attr]
    if subject:
        headers.append(_header(HEADER_SUBJECT, subject))
    else:
        remove.append(HEADER_SUBJECT)
    if tenant:
        headers.append(_cached_header(HEADER_TENANT, tenant))
    else:
        remove.append(HEADER_TENANT)
    fields = response.dynamic_metadata.fields
    fields["decisionId"].string_value = decision_id
    fields["action"].string_value = decision.action
    if route_id:
        fields["routeId"].string_value = route_id
    if decision.action == MONITOR:
        _summary(response.dynamic_metadata, decision)
    return response


_HEADER_CACHE: dict[tuple[str, str], HeaderValueOption] = {}
_HEADER_CACHE_MAX = 4096


def _cached_header(key: str, value: str) -> HeaderValueOption:
    """Route ids and tenants repeat: reuse their header protos (bounded, reset when full)."""
    option = _HEADER_CACHE.get((key, value))
    if option is None:
        if len(_HEADER_CACHE) >= _HEADER_CACHE_MAX:
            _HEADER_CACHE.clear()
        option = _HEADER_CACHE[(key, value)] = _header(key, value)
    return option


def _cache_metadata(meta: Any, decision: Decision, cacheable: bool) -> None:
    """Tell the client SDK which policy decided (its cache is cleared on a change)."""
    if decision.metadata.policy_version:
        meta.fields[META_POLICY_VERSION].string_value = decision.metadata.policy_version
    if not cacheable:
        meta.fields[META_CACHE].string_value = "no-store"


def _denied(decision: Decision, decision_id: str, error_code: str) -> CheckResponse:
    body = {
        "error": decision.reason or "request blocked by policy",
        "code": error_code,
        "ruleHits": list(decision.rule_ids),
        "requestId": decision_id,
    }
    denied = DeniedHttpResponse(
        status=HttpStatus(code=decision.status_code),  # type: ignore[arg-type]
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
    )
    denied.headers.append(_JSON_CONTENT_TYPE)
    denied.headers.append(_BLOCK_DECISION_HEADER)
    denied.headers.append(_header(HEADER_DECISION_ID, decision_id))
    meta = Struct()
    meta["decisionId"] = decision_id
    meta["action"] = decision.action
    if decision.metadata.route_id:
        meta["routeId"] = decision.metadata.route_id
    _summary(meta, decision)
    return CheckResponse(
        status=Status(code=GRPC_PERMISSION_DENIED, message=error_code),
        denied_response=denied,
        dynamic_metadata=meta,
    )


def _summary(meta: Any, decision: Decision) -> None:
    meta["statusCode"] = decision.status_code
    meta["reason"] = decision.reason
    meta["ruleHits"] = list(decision.rule_ids)
    meta["riskScore"] = decision.risk.score
    if decision.metadata.policy_version:
        meta["policyVersion"] = decision.metadata.policy_version
