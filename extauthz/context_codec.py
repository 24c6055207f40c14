"""The JSON doors' codec: context bytes -> ``RequestContext``, ``Decision`` -> JSON bytes.

Two paths that give the same result (tests/model/test_context_codec.py checks it over
hypothesis contexts):

- the plain path, ``plain_context``: ``json.loads`` then ``RequestContext.from_dict``. It is
  the reference, and it alone refuses: every refusal message comes from it.
- the fast path, ``fast_context``: msgspec decodes the bytes straight into typed structs
  shaped like the common context (no intermediate dicts for the envelope, no per-key
  ``get``/``isinstance``), then the dataclasses are built from them. It handles only what the
  plain path would accept with the same result, and returns None for everything else (a
  type off the common shape, a query left in the path, bad base64, a lone surrogate, NaN,
  a BOM, an integer msgspec will not parse, more than ``MAX_OPENERS`` brackets), so the
  caller takes the plain path, which refuses or accepts as it always did.

Big integers: msgspec keeps integers of any size up to its own bound exactly, as
``json.loads`` does; beyond it msgspec fails and the plain path decides (Python's 4,300-digit
limit included). Depth: ``json.loads`` and msgspec both stop at the interpreter's recursion
limit, which depends on the caller's stack, so a body with more than ``MAX_OPENERS`` ``[``
and ``{`` bytes (an upper bound of its nesting) always takes the plain path.

``decision_json`` is ``Decision.to_json().encode()`` by msgspec's encoder (the same bytes:
compact, UTF-8 as is, the same escapes), without the text round trip.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable
from typing import Any

import msgspec

from ._exceptions import InvalidContext
from ._json import COMPACT_ASCII
from .context import (
    CONTEXT_VERSION,
    EMPTY_BODY,
    Body,
    BodyJson,
    ClientInfo,
    HttpRequest,
    Identity,
    RequestContext,
    RuntimeInfo,
)
from .decision import Decision

#: More ``[``/``{`` bytes than this and the plain path decodes (see the module docstring).
MAX_OPENERS = 256

NewId = Callable[[], str] | None


class _BodyJson(msgspec.Struct, forbid_unknown_fields=True):
    sample: Any
    redacted: bool = False


class _Body(msgspec.Struct, forbid_unknown_fields=True):
    present: bool | None = None
    sizeBytes: int | None = None  # the JSON form's names
    sha256: str | None = None
    raw: str | None = None
    rawEncoding: str = "utf-8"
    rawBase64: str | None = None
    json: _BodyJson | None = None
    partial: bool | None = None


class _Request(msgspec.Struct, forbid_unknown_fields=True):
    method: str
    path: str
    headers: dict[str, str] | None = None
    query: dict[str, str] | None = None
    contentType: str | None = None
    routeId: str | None = None
    host: str | None = None
    scheme: str | None = None
    body: _Body | None = None


class _Identity(msgspec.Struct, forbid_unknown_fields=True):
    authenticated: bool | None = None
    subject: str | None = None
    tenant: str | None = None
    scopes: list[str] | str | None = None
    claims: dict[str, Any] | None = None


class _Client(msgspec.Struct, forbid_unknown_fields=True):
    ip: str | None = None
    userAgent: str | None = None


class _Runtime(msgspec.Struct, forbid_unknown_fields=True):
    service: str | None = None
    env: str | None = None
    language: str | None = None


class _Webhook(msgspec.Struct, forbid_unknown_fields=True):
    provider: str | None = None
    signatureValid: bool | None = None
    replayed: bool | None = None


class _Context(msgspec.Struct, forbid_unknown_fields=True):
    request: _Request
    identity: _Identity | None = None
    client: _Client | None = None
    runtime: _Runtime | None = None
    webhook: _Webhook | None = None
    id: str | None = None
    timestamp: str | None = None
    version: str | None = None


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """Upstream's ``POST /evaluate`` body with nothing but the context."""

    context: _Context


_CONTEXT = msgspec.json.Decoder(_Context)
_ENVELOPE = msgspec.json.Decoder(_Envelope)
_ENCODE = msgspec.json.Encoder().encode
_ANONYMOUS = Identity()
_NO_CLIENT = ClientInfo()
_NO_RUNTIME = RuntimeInfo()


def random_request_id() -> str:
    """The id a door gives a context without one (every decision carries a request id)."""
    return os.urandom(16).hex()  # uuid4().hex's length, without the UUID object


def plain_context(body: bytes, new_id: NewId = None) -> RequestContext:
    """``json.loads`` + ``from_dict``: the reference; raises ``InvalidContext``.

    ``new_id`` gives a context without an id one (the server's doors: every decision carries
    a request id).
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidContext(f"context is not valid JSON: {exc}") from exc
    if new_id is not None and isinstance(data, dict) and not data.get("id"):
        data["id"] = new_id()
    return RequestContext.from_dict(data)


def fast_context(body: bytes, new_id: NewId = None) -> RequestContext | None:
    """The context ``plain_context`` would build, or None: then ``plain_context`` decides."""
    if body.count(b"[") + body.count(b"{") > MAX_OPENERS:
        return None
    try:
        decoded = _CONTEXT.decode(body)
    except (msgspec.MsgspecError, RecursionError):
        return None
    return _build(decoded, new_id)


def fast_envelope(body: bytes, new_id: NewId = None) -> RequestContext | None:
    """``fast_context`` for ``{"context": ...}`` alone (upstream's ``POST /evaluate``); None
    for any other body (a policy, options, an error), which the plain path handles."""
    if body.count(b"[") + body.count(b"{") > MAX_OPENERS:
        return None
    try:
        decoded = _ENVELOPE.decode(body)
    except (msgspec.MsgspecError, RecursionError):
        return None
    return _build(decoded.context, new_id)


def context_from_json(body: bytes, new_id: NewId = None) -> RequestContext:
    """The fast path when it applies, else the plain one; raises ``InvalidContext``."""
    ctx = fast_context(body, new_id)
    return ctx if ctx is not None else plain_context(body, new_id)


def decision_json(decision: Decision) -> bytes:
    """``decision.to_json().encode()``, the same bytes, by msgspec's encoder."""
    return _ENCODE(decision.to_dict())


def upstream_answer(decision: Decision, duration_ms: float) -> bytes:
    """``{"decision": ..., "durationMs": ...}`` as ``COMPACT_ASCII`` writes it (upstream's
    ``POST /evaluate`` answer): msgspec's bytes when they are printable ASCII (then the
    escapes are the same), else the plain encoder's."""
    try:
        inner = _ENCODE(decision.to_dict())
    except UnicodeEncodeError:  # a lone surrogate: the ASCII encoder escapes it
        inner = b"\x80"
    if inner.isascii() and b"\x7f" not in inner:
        return b'{"decision":%s,"durationMs":%s}' % (inner, json.dumps(duration_ms).encode())
    return COMPACT_ASCII.encode(
        {"decision": decision.to_dict(), "durationMs": duration_ms}
    ).encode()


def _build(c: _Context, new_id: NewId) -> RequestContext | None:
    """The dataclasses from the decoded structs; None where ``from_dict`` would differ."""
    r = c.request
    path = r.path
    if not r.method or not path or "?" in path or "#" in path:
        return None
    headers = {k.lower(): v for k, v in r.headers.items()} if r.headers else {}
    content_type = r.contentType
    if content_type is None:
        content_type = headers.get("content-type")
    body = EMPTY_BODY if r.body is None else _body(r.body)
    if body is None:
        return None
    request = HttpRequest(
        r.method,
        path,
        headers,
        dict(r.query) if r.query else {},
        content_type,
        r.routeId,
        r.host,
        r.scheme,
        body,
    )
    i = c.identity
    if i is None:
        identity = _ANONYMOUS
    else:
        scopes = i.scopes or ()
        if isinstance(scopes, str):
            scopes = scopes.split()
        identity = Identity(
            bool(i.authenticated), i.subject, i.tenant, tuple(scopes), dict(i.claims or {})
        )
    cl, rt = c.client, c.runtime
    request_id = c.id
    if not request_id and new_id is not None:
        request_id = new_id()
    return RequestContext(
        request,
        identity,
        _NO_CLIENT if cl is None else ClientInfo(cl.ip, cl.userAgent),
        _NO_RUNTIME if rt is None else RuntimeInfo(rt.service, rt.env, rt.language),
        request_id or "",
        c.timestamp or "",
        c.version or CONTEXT_VERSION,
    )


def _body(b: _Body) -> Body | None:
    encoding = b.rawEncoding
    if encoding not in ("utf-8", "utf8", "base64"):
        return None
    raw: bytes | None = None
    if b.raw is not None:
        if encoding == "base64":
            try:
                raw = base64.b64decode(b.raw, validate=True)
            except (ValueError, binascii.Error):
                return None
        else:
            raw = b.raw.encode("utf-8")
    elif b.rawBase64 is not None:
        try:
            raw = base64.b64decode(b.rawBase64, validate=True)
        except (ValueError, binascii.Error):
            return None
    js = b.json
    body_json = None if js is None else BodyJson(js.sample, js.redacted)
    size = b.sizeBytes
    if size is None:
        size = len(raw) if raw is not None else 0
    elif size < 0:
        return None
    present = b.present
    if present is None:
        present = raw is not None or body_json is not None or size > 0
    return Body(bool(present), size, b.sha256, raw, body_json, bool(b.partial))
