"""Envoy's HTTP-mode authorization request → ``RequestContext``: a pure function, no I/O.

In ``http_service`` mode Envoy sends the client's request itself: the same method, the path
(behind ``path_prefix``) with the raw query, the client's headers and, with
``with_request_body``, the buffered body (``x-envoy-auth-partial-body: true`` when cut). What
gRPC mode carries beside the request arrives in headers the shipped config sets
(``envoy/envoy-http.yaml``), each removed from the client's request before jwt_authn runs, so a
client can never supply them:

    x-jwt-payload                    the payload jwt_authn verified (``forward_payload_header``,
                                     base64url JSON); absent → anonymous
    x-contractshield-client-address  the downstream address (``headers_to_add``), never a
                                     client's ``x-forwarded-for``
    x-contractshield-content-length  the client's ``content-length``: Envoy rewrites that header
                                     to the bytes it buffered, size limits need the declared one

Or identity from the claim headers ``JWT_CLAIM_HEADERS`` names, as in gRPC mode (``request``).
Not carried: ``context_extensions`` (no route id, service or env from Envoy); the policy's own
route matching by method and path decides the route, as it does when no route id is sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from datetime import UTC, datetime

from .._exceptions import InvalidContext
from .._http import HttpIn, declared_length
from ..context import (
    ANONYMOUS,
    ClientInfo,
    HttpRequest,
    Identity,
    RequestContext,
    RuntimeInfo,
)
from ..engine.decoders._base import json_depth
from .request import (
    CLAIMS_TOO_DEEP,
    DEFAULT_OPTIONS,
    MAX_CLAIMS_DEPTH,
    AdapterOptions,
    body_of,
    identity_from_claim_headers,
    identity_from_claims,
    query_of,
)

PAYLOAD_HEADER = "x-jwt-payload"
CLIENT_ADDRESS_HEADER = "x-contractshield-client-address"
CONTENT_LENGTH_HEADER = "x-contractshield-content-length"
#: Headers Envoy adds for us: never part of the request the policy sees.
INTERNAL_HEADERS = frozenset({PAYLOAD_HEADER, CLIENT_ADDRESS_HEADER, CONTENT_LENGTH_HEADER})
PAYLOAD_CACHE_SIZE = 4096


def forwarded_request_to_context(
    req: HttpIn, options: AdapterOptions = DEFAULT_OPTIONS
) -> RequestContext:
    """Convert one authorization request (``path`` without Envoy's ``path_prefix``); raises ``InvalidContext`` when it is unusable."""
    if not req.method:
        raise InvalidContext("authorization request has no method")
    if not req.path.startswith("/"):
        raise InvalidContext("authorization request has no path")
    # The client's headers: a copy without ours (``INTERNAL_HEADERS``), in their order. Copied
    # then popped: a dict copy is one C call, a comprehension a step per header (~8k
    # instructions a check with Envoy's dozen, ``bench/door_instructions.py``).
    headers = dict(req.headers)
    payload = headers.pop(PAYLOAD_HEADER, None)
    client_ip = headers.pop(CLIENT_ADDRESS_HEADER, None) or None
    declared_text = headers.pop(CONTENT_LENGTH_HEADER, None) or headers.get("content-length")
    path = req.path.partition("#")[0]
    raw_query = req.query.partition("#")[0]
    http_request = HttpRequest(
        req.method.upper(),
        path,
        headers,
        query_of(raw_query) if raw_query else {},
        headers.get("content-type"),
        None,
        headers.get("host") or None,
        headers.get("x-forwarded-proto") or None,
        body_of(req.body, headers, declared_length(declared_text)),
    )
    identity = _identity(payload, options) if payload else ANONYMOUS
    if identity is ANONYMOUS and options.claim_headers:
        identity = identity_from_claim_headers(headers, options)
    return RequestContext(
        http_request,
        identity,
        ClientInfo(client_ip, headers.get("user-agent")),
        _NO_RUNTIME,
        headers.get("x-request-id") or uuid.uuid4().hex,
        _now(),
    )


_NO_RUNTIME = RuntimeInfo()


# Keyed by (options id, header value): a token is reused for many requests.
_IDENTITIES: dict[tuple[int, str], Identity] = {}


def _identity(payload: str, options: AdapterOptions) -> Identity:
    key = (id(options), payload)
    identity = _IDENTITIES.get(key)
    if identity is not None:
        return identity
    try:
        text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidContext(f"{PAYLOAD_HEADER}: not a base64url JSON payload") from exc
    # gRPC mode's limit, in the same words (``MAX_CLAIMS_DEPTH``): both modes refuse alike
    if json_depth(text) > MAX_CLAIMS_DEPTH:
        raise InvalidContext(CLAIMS_TOO_DEEP)
    try:
        claims = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidContext(f"{PAYLOAD_HEADER}: not a base64url JSON payload") from exc
    return identity_from_claims(claims, options, _IDENTITIES, key, PAYLOAD_CACHE_SIZE)


def _now() -> str:
    """Envoy sends no request time in HTTP mode: the time we received it, to the millisecond."""
    now = time.time()
    seconds = int(now)
    prefix = _TS_PREFIX.get(seconds)
    if prefix is None:  # once per second of traffic
        _TS_PREFIX.clear()
        prefix = _TS_PREFIX[seconds] = datetime.fromtimestamp(seconds, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
    return prefix + _MILLIS[int((now - seconds) * 1000) % 1000]


_TS_PREFIX: dict[int, str] = {}
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))
