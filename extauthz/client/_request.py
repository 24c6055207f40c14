"""A request description → the standard ext_authz v3 ``CheckRequest`` Envoy would send.

``CheckInput`` is the normalized description (what the cache key is computed from); the
``CheckRequest`` is only built on a cache miss. Identity goes where Envoy's jwt_authn filter
puts it: ``metadata_context.filter_metadata["envoy.filters.http.jwt_authn"]["jwt_payload"]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from .._exceptions import InvalidContext
from ..context import Identity

JWT_NAMESPACE = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD_KEY = "jwt_payload"

HeadersInput: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]] | None
IdentityInput: TypeAlias = Identity | Mapping[str, Any] | None


@dataclass(slots=True, frozen=True)
class ClaimNames:
    """JWT claim names the PDP reads identity from (must match the server's settings)."""

    subject: str = "sub"
    tenant: str = "tenant"
    scopes: str = "scope"  # "scope" → space-separated string; "scp" → list


DEFAULT_CLAIM_NAMES = ClaimNames()


class CheckInput(NamedTuple):
    """Everything the PDP can read about one request, normalized like Envoy does.

    Immutable, fields by name. A ``NamedTuple``: one is built on every ``evaluate``, cache
    hits included, and a tuple is built in C (0.6 µs; a ``frozen_dataclass`` takes 1.3 µs).
    """

    method: str
    path: str  # raw path including the query string, as Envoy sends it
    headers: tuple[tuple[str, str], ...]  # lower-case names, repeats comma-joined, sorted
    body: bytes | None
    identity: IdentityInput
    identity_key: tuple[Any, ...] | str | None  # canonical form of the identity, for the key
    client_ip: str | None
    host: str | None
    scheme: str | None
    context_extensions: tuple[tuple[str, str], ...]


def normalize_headers(headers: HeadersInput) -> tuple[tuple[str, str], ...]:
    """Lower-case names and comma-join repeats (Envoy's view of headers), sorted by name."""
    return tuple(sorted(_header_map(headers).items()))


_STR_ONLY = frozenset({str})


def _header_map(headers: HeadersInput) -> dict[str, str]:
    """``normalize_headers`` before sorting: lower-case names, repeats comma-joined."""
    if not headers:
        return {}
    if type(headers) is dict or isinstance(headers, Mapping):  # a dict skips the ABC check
        low = {k.lower(): v for k, v in headers.items()}
        if len(low) == len(headers) and _STR_ONLY.issuperset(map(type, low.values())):
            return low  # the common case: nothing to join
        items: Iterable[tuple[str, str]] = headers.items()
    else:
        items = headers
    out: dict[str, str] = {}
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidContext("headers: names and values must be strings")
        key = name.lower()
        prev = out.get(key)
        out[key] = value if prev is None else f"{prev},{value}"
    return out


def _json(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidContext(f"identity: claims must be JSON values ({exc})") from exc


def identity_key(identity: IdentityInput) -> tuple[Any, ...] | str | None:
    """A canonical, cheap form of the identity: equal keys give equal JWT payloads."""
    if identity is None:
        return None
    if isinstance(identity, Identity):
        if not identity.authenticated:
            return None
        claims = _json(identity.claims) if identity.claims else ""
        return (identity.subject, identity.tenant, tuple(identity.scopes), claims)
    if isinstance(identity, Mapping):
        return _json(identity)
    raise InvalidContext("identity: expected an Identity, a claims mapping or None")


def jwt_payload(identity: IdentityInput, claims: ClaimNames) -> Mapping[str, Any] | None:
    """The JWT payload Envoy would forward; a Mapping is taken as the verified claims."""
    if identity is None:
        return None
    if isinstance(identity, Mapping):
        return dict(identity)
    if not identity.authenticated:
        return None
    payload: dict[str, Any] = dict(identity.claims)
    if identity.subject is not None:
        payload[claims.subject] = identity.subject
    if identity.tenant is not None:
        payload[claims.tenant] = identity.tenant
    if identity.scopes:
        payload[claims.scopes] = (
            list(identity.scopes) if claims.scopes == "scp" else " ".join(identity.scopes)
        )
    return payload


def describe(
    method: str,
    path: str,
    *,
    headers: HeadersInput = None,
    body: bytes | None = None,
    identity: IdentityInput = None,
    client_ip: str | None = None,
    host: str | None = None,
    scheme: str | None = None,
    context_extensions: Mapping[str, str] | None = None,
) -> CheckInput:
    """Validate and normalize a request description; raises ``InvalidContext``."""
    if not isinstance(method, str) or not method:
        raise InvalidContext("method: required string is missing")
    if not isinstance(path, str) or not path:
        raise InvalidContext("path: required string is missing")
    if body is not None and type(body) is not bytes:
        if not isinstance(body, bytearray | memoryview):
            raise InvalidContext("body: expected bytes or None")
        body = bytes(body)
    header_map = _header_map(headers)
    if host is None:
        host = header_map.get("host")
    return CheckInput(
        method.upper(),
        path,
        tuple(sorted(header_map.items())),
        body,
        identity,
        identity_key(identity),
        client_ip,
        host,
        scheme,
        tuple(sorted(context_extensions.items())) if context_extensions else (),
    )


def build_check_request(inp: CheckInput, claims: ClaimNames = DEFAULT_CLAIM_NAMES) -> CheckRequest:
    """The ``CheckRequest`` Envoy's ext_authz filter would send for this request."""
    req = CheckRequest()
    attrs = req.attributes
    http = attrs.request.http
    http.method = inp.method
    http.path = inp.path
    http.protocol = "HTTP/1.1"
    http.scheme = inp.scheme or "http"
    if inp.host is not None:
        http.host = inp.host
    hmap = http.headers
    hmap[":method"] = inp.method
    hmap[":path"] = inp.path
    hmap[":scheme"] = http.scheme
    if inp.host is not None:
        hmap[":authority"] = inp.host
    try:
        for name, value in inp.headers:
            hmap[name] = value
    except (TypeError, ValueError) as exc:
        raise InvalidContext(f"headers: {exc}") from exc
    request_id = next((v for k, v in inp.headers if k == "x-request-id"), None)
    if request_id:
        http.id = request_id
    if inp.body is not None:
        http.raw_body = inp.body
        http.size = len(inp.body)
    else:
        http.size = -1
    if inp.client_ip:
        attrs.source.address.socket_address.address = inp.client_ip
    for key, value in inp.context_extensions:
        attrs.context_extensions[key] = value
    payload = jwt_payload(inp.identity, claims)
    if payload is not None:
        ns = attrs.metadata_context.filter_metadata[JWT_NAMESPACE]
        try:
            ns.fields[JWT_PAYLOAD_KEY].struct_value.update(payload)
        except (TypeError, ValueError) as exc:
            raise InvalidContext(f"identity: claims must be JSON values ({exc})") from exc
    return req
