"""Envoy ``CheckRequest`` → ``RequestContext``: a pure function, no I/O.

What Envoy sends (``attributes.request.http``): the method, ``path`` with the raw undecoded
query still attached (``query`` is always empty), lower-cased headers with repeats
comma-joined (or ``header_map`` when ``encode_raw_headers`` is on), ``host`` (the
``:authority``), ``scheme``, and the buffered body in ``raw_body`` (exact bytes, with
``pack_as_bytes: true``) or ``body`` (a UTF-8 string). A body Envoy cut at
``max_request_bytes`` arrives with ``x-envoy-auth-partial-body: true``.

Identity comes from the jwt_authn filter, which has already verified the token and put its
payload into dynamic metadata (``payload_in_metadata``); ext_authz forwards that namespace in
``metadata_context`` when it is listed in ``metadata_context_namespaces``. Meshes that do not
forward it (Istio, Envoy Gateway: docs/mesh.md) copy chosen claims into request headers
(``claim_to_headers``) instead; ``JWT_CLAIM_HEADERS`` names them, and both adapters read them
when no payload arrived.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from envoy.service.auth.v3.attribute_context_pb2 import AttributeContext
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Struct

from .._exceptions import InvalidConfig, InvalidContext
from .._http import declared_length, query_of
from ..context import (
    ANONYMOUS,
    EMPTY_BODY,
    Body,
    ClientInfo,
    HttpRequest,
    Identity,
    RequestContext,
    RuntimeInfo,
)
from ._protowire import varint as _varint

JWT_AUTHN_NAMESPACE = "envoy.filters.http.jwt_authn"
PARTIAL_BODY_HEADER = "x-envoy-auth-partial-body"
ROUTE_ID_EXTENSION = "route_id"

#: How deep verified JWT claims may nest (the claims object is level 1). Real tokens nest a
#: few levels; gRPC mode cannot even decode a payload nested ~31 levels (upb's limit on the
#: whole CheckRequest), so a limit well below that makes both modes refuse the same tokens
#: with the same words (issue 24): a 400 ``request.invalid``, never a library's message.
MAX_CLAIMS_DEPTH = 16
CLAIMS_TOO_DEEP = f"identity: the JWT claims are nested deeper than {MAX_CLAIMS_DEPTH} levels"
NOT_A_CHECK_REQUEST = "the body is not a CheckRequest (its bytes do not decode)"


@dataclass(frozen=True, slots=True)
class AdapterOptions:
    """Where identity lives in Envoy's metadata and which claims name what."""

    jwt_namespace: str = JWT_AUTHN_NAMESPACE
    jwt_metadata_key: str = "jwt_payload"
    subject_claim: str = "sub"
    tenant_claim: str = "tenant"
    scopes_claim: str = "scope"
    # (claim, header) pairs: the mesh's jwt_authn copied these verified claims into headers
    # (``JWT_CLAIM_HEADERS``); empty = not read.
    claim_headers: tuple[tuple[str, str], ...] = ()
    # Identities built under these options, keyed by the jwt_authn namespace's plain
    # ``SerializeToString()`` bytes (see ``_identity``).
    _identities: dict[bytes, Identity] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_config(cls, config: Any) -> AdapterOptions:
        return cls(
            jwt_metadata_key=config.jwt_metadata_key,
            subject_claim=config.subject_claim,
            tenant_claim=config.tenant_claim,
            scopes_claim=config.scopes_claim,
            claim_headers=parse_claim_headers(getattr(config, "jwt_claim_headers", "")),
        )


def parse_claim_headers(text: str) -> tuple[tuple[str, str], ...]:
    """``JWT_CLAIM_HEADERS``: ``claim=header,claim=header`` → ``((claim, header), ...)``."""
    pairs: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        claim, sep, header = (x.strip() for x in item.partition("="))
        if not sep or not claim or not _HEADER_NAME.fullmatch(header):
            raise InvalidConfig(
                f"JWT_CLAIM_HEADERS: expected claim=header-name, comma-separated, got {item!r}"
            )
        if any(claim == c or header.lower() == h for c, h in pairs):
            raise InvalidConfig(f"JWT_CLAIM_HEADERS: {item!r} repeats a claim or a header")
        pairs.append((claim, header.lower()))
    return tuple(pairs)


_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def identity_from_claim_headers(headers: dict[str, str], options: AdapterOptions) -> Identity:
    """The identity in the headers ``claim_headers`` names (values as Envoy wrote them:
    strings, numbers and booleans as text); anonymous when none is there."""
    claims = {c: headers[h] for c, h in options.claim_headers if headers.get(h)}
    if not claims:
        return ANONYMOUS
    return Identity(
        authenticated=True,
        subject=claims.get(options.subject_claim),
        tenant=claims.get(options.tenant_claim),
        scopes=_scopes(claims, options.scopes_claim),
        claims=MappingProxyType(claims),
    )


DEFAULT_OPTIONS = AdapterOptions()


def parse_check_request(data: bytes) -> CheckRequest:
    """``CheckRequest`` bytes → the message; raises ``InvalidContext`` in our own words.

    upb refuses a message nested past its depth limit; in a CheckRequest only the metadata
    (jwt_authn's payload: the token's claims) can nest that deep. When the request decodes
    without ``attributes.metadata_context``, that was the cause: the same refusal as claims
    nested past ``MAX_CLAIMS_DEPTH`` that do decode, in both modes.
    """
    try:
        return CheckRequest.FromString(data)
    except DecodeError:
        pass
    stripped = _without_metadata(data)
    if stripped is not None:
        try:
            CheckRequest.FromString(stripped)
        except DecodeError:
            pass
        else:
            raise InvalidContext(CLAIMS_TOO_DEEP)
    raise InvalidContext(NOT_A_CHECK_REQUEST)


_ATTRIBUTES = 1  # CheckRequest.attributes
_METADATA_FIELDS = frozenset({11, 13})  # AttributeContext.metadata_context, route_metadata_context


def _without_metadata(data: bytes) -> bytes | None:
    """``data`` with the attributes' metadata fields cut out at the wire level, or None when
    the bytes are not well-formed protobuf wire format."""
    fields = _wire_fields(data)
    if fields is None:
        return None
    out = bytearray()
    for number, wire_type, start, value_start, end in fields:
        if number == _ATTRIBUTES and wire_type == 2:
            inner = _wire_fields(data[value_start:end])
            if inner is None:
                return None
            kept = b"".join(
                data[value_start + a : value_start + e]
                for n, _, a, _, e in inner
                if n not in _METADATA_FIELDS
            )
            out += _tag(number, 2) + _varint(len(kept)) + kept
        else:
            out += data[start:end]
    return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _read_varint(data: bytes, pos: int) -> tuple[int, int] | None:
    result = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    return None


def _wire_fields(data: bytes) -> list[tuple[int, int, int, int, int]] | None:
    """Top-level fields: (number, wire type, start of tag, start of value, end)."""
    fields = []
    pos = 0
    while pos < len(data):
        start = pos
        read = _read_varint(data, pos)
        if read is None:
            return None
        key, pos = read
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            read = _read_varint(data, pos)
            if read is None:
                return None
            value_start, pos = pos, read[1]
        elif wire_type == 1 or wire_type == 5:
            value_start, pos = pos, pos + (8 if wire_type == 1 else 4)
        elif wire_type == 2:
            read = _read_varint(data, pos)
            if read is None:
                return None
            length, value_start = read
            pos = value_start + length
        else:  # groups: never in these messages
            return None
        if pos > len(data) or number == 0:
            return None
        fields.append((number, wire_type, start, value_start, pos))
    return fields


def check_request_to_context(req: Any, options: AdapterOptions = DEFAULT_OPTIONS) -> RequestContext:
    """Convert one ``CheckRequest``; raises ``InvalidContext`` when it has no usable request."""
    # Hot path (every check): each upb sub-message access creates a wrapper object, so every
    # sub-message is read once and kept.
    attrs = req.attributes
    request = attrs.request
    http = request.http
    method = http.method
    full_path = http.path
    if not method:
        raise InvalidContext("CheckRequest has no attributes.request.http.method")
    if not full_path:
        raise InvalidContext("CheckRequest has no attributes.request.http.path")
    path, sep, raw_query = full_path.partition("?")
    if not sep:
        raw_query = http.query
    if "#" in path:
        path = path.partition("#")[0]
    if raw_query:
        raw_query = raw_query.partition("#")[0]
    headers = _headers(http)
    ctx_ext = attrs.context_extensions
    if ctx_ext:
        route_id = ctx_ext.get(ROUTE_ID_EXTENSION) or None
        runtime = RuntimeInfo(ctx_ext.get("service"), ctx_ext.get("env"))
    else:
        route_id = None
        runtime = _NO_RUNTIME
    # Positional arguments in field order: cheaper than keywords for these frozen classes.
    http_request = HttpRequest(
        method.upper(),
        path,
        headers,
        query_of(raw_query) if raw_query else {},
        headers.get("content-type"),
        route_id,
        http.host or headers.get("host") or None,
        http.scheme or None,
        _body(http, headers),
    )
    client = ClientInfo(
        attrs.source.address.socket_address.address or None, headers.get("user-agent")
    )
    request_id = headers.get("x-request-id") or http.id or uuid.uuid4().hex
    identity = _identity(attrs.metadata_context, options)
    if identity is ANONYMOUS and options.claim_headers:
        identity = identity_from_claim_headers(headers, options)
    return RequestContext(
        http_request,
        identity,
        client,
        runtime,
        request_id,
        _timestamp(request),
    )


_NO_RUNTIME = RuntimeInfo()

# Message methods called through the class: ``msg.HasField`` first looks ``HasField`` up as a
# field name, then through the type's MRO (upb's ``__getattr__`` tries fields first), about
# 60 ns a call; attribute reads of real fields take the direct path and need no such trick.
_HTTP_HAS_FIELD = AttributeContext.HttpRequest.HasField
_REQUEST_HAS_FIELD = AttributeContext.Request.HasField
_SERIALIZE_STRUCT = Struct.SerializeToString


def _headers(http: Any) -> dict[str, str]:
    # HasField first: reading an absent header_map still builds two wrapper objects.
    if _HTTP_HAS_FIELD(http, "header_map") and len(http.header_map.headers):
        out: dict[str, str] = {}
        for hv in http.header_map.headers:
            key = hv.key.lower()
            if key.startswith(":"):
                continue
            value = hv.raw_value.decode("utf-8", "replace") if hv.raw_value else hv.value
            out[key] = f"{out[key]},{value}" if key in out else value
        return out
    # Envoy lower-cases these keys and already comma-joins repeats. Keys then ``[key]``: the
    # map's ``items()`` is a pure-Python generator (about twice as slow), and pseudo-headers
    # are skipped before their value is converted.
    headers = http.headers
    try:
        # ``key[0]`` rather than ``key[:1]``: no slice object per header.
        return {key: headers[key] for key in headers if key[0] != ":"}
    except IndexError:  # an empty header name (Envoy never sends one): kept, as ever
        return {key: headers[key] for key in headers if key[:1] != ":"}


def _body(http: Any, headers: dict[str, str]) -> Body:
    raw: bytes = http.raw_body or (
        http.body.encode("utf-8", "surrogateescape") if http.body else b""
    )
    return body_of(raw, headers, declared_length(headers.get("content-length")))


def body_of(raw: bytes, headers: dict[str, str], declared: int | None) -> Body:
    """The ``Body`` for the bytes Envoy sent and the length the client declared (both modes)."""
    # Envoy flags a body cut at max_request_bytes; it may also dispatch early (buffer
    # watermarks) with fewer bytes than content-length and no flag: that body is partial too.
    partial = headers.get(PARTIAL_BODY_HEADER, "").lower() == "true" or (
        bool(raw) and declared is not None and declared > len(raw)
    )
    if raw or partial:
        # Size limits must see what the client sent, not what Envoy kept.
        size = max(len(raw), declared or 0) if partial else len(raw)
        # Positional (present, size_bytes, sha256, raw, json, partial): cheaper than keywords.
        return Body(True, size, None, raw, None, partial)
    if declared:
        # Envoy did not buffer the body (no with_request_body): its size is known, bytes are not.
        return Body(True, declared)
    return EMPTY_BODY


def _identity(metadata: Any, options: AdapterOptions) -> Identity:
    fm = metadata.filter_metadata
    if options.jwt_namespace not in fm:
        return ANONYMOUS
    struct = fm[options.jwt_namespace]
    # A token is reused for many requests: the identity is a pure function of the verified
    # payload (and the options), so it is built once per distinct payload (bounded cache,
    # one per options object). The key is the bytes of the whole jwt_authn namespace (the
    # payload and whatever else jwt_authn put there for this token): they determine the
    # payload, so equal keys are equal payloads, and a hit skips three upb look-ups. Not
    # ``deterministic=True`` (which sorts map keys, about twice the cost): an equal payload
    # whose map serialises in another order only costs a cache miss.
    cache = options._identities
    key = _SERIALIZE_STRUCT(struct)
    identity = cache.get(key)
    if identity is not None:
        return identity
    fields = struct.fields
    if options.jwt_metadata_key not in fields:
        return ANONYMOUS
    claims = _value(fields[options.jwt_metadata_key], MAX_CLAIMS_DEPTH)
    return identity_from_claims(claims, options, cache, key, IDENTITY_CACHE_SIZE)


IDENTITY_CACHE_SIZE = 4096


def identity_from_claims(
    claims: Any,
    options: AdapterOptions,
    cache: dict[Any, Identity],
    key: Any,
    limit: int,
) -> Identity:
    """A verified JWT payload as an ``Identity`` (both authz modes), kept in ``cache`` under
    ``key`` (at most ``limit`` entries, then the cache starts again): anonymous, and not
    kept, unless it is a non-empty object. The claims are shared between requests: read-only."""
    if not isinstance(claims, dict) or not claims:
        return ANONYMOUS
    identity = Identity(
        authenticated=True,
        subject=_claim_str(claims.get(options.subject_claim)),
        tenant=_claim_str(claims.get(options.tenant_claim)),
        scopes=_scopes(claims, options.scopes_claim),
        claims=MappingProxyType(claims),
    )
    if len(cache) >= limit:
        cache.clear()
    cache[key] = identity
    return identity


def _claim_str(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return value if isinstance(value, str) else str(value)


def _scopes(claims: dict[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name)
    if value is None:
        value = claims.get("scp")  # Azure AD / Okta style: a list
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list):
        return tuple(str(v) for v in value if isinstance(v, str | int | float))
    return ()


def _value(v: Any, depth: int) -> Any:
    """``google.protobuf.Value`` → plain Python; integral numbers come back as ``int``.

    ``depth``: how many more levels of objects and arrays may follow (``CLAIMS_TOO_DEEP``).
    """
    kind = v.WhichOneof("kind")
    if kind == "string_value":
        return v.string_value
    if kind == "number_value":
        n = v.number_value
        return int(n) if n.is_integer() and abs(n) < 2**53 else n
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value" or kind == "list_value":
        if depth <= 0:
            raise InvalidContext(CLAIMS_TOO_DEEP)
        if kind == "struct_value":
            return {k: _value(x, depth - 1) for k, x in v.struct_value.fields.items()}
        return [_value(x, depth - 1) for x in v.list_value.values]
    return None


def _timestamp(request: Any) -> str:
    t = request.time
    seconds = t.seconds
    nanos = t.nanos
    # HasField only when both are 0: an unset ``time`` reads as 0/0, and HasField is dearer.
    if not (seconds or nanos) and not _REQUEST_HAS_FIELD(request, "time"):
        return ""
    prefix = _TS_PREFIX.get(seconds)
    if prefix is None:  # once per second of traffic
        _TS_PREFIX.clear()
        prefix = _TS_PREFIX[seconds] = datetime.fromtimestamp(seconds, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
    if 0 <= nanos < 1_000_000_000:
        return prefix + _MILLIS[nanos // 1_000_000]
    return f"{prefix}.{nanos // 1_000_000:03d}Z"  # out-of-range nanos, formatted as before


_TS_PREFIX: dict[int, str] = {}
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))
