"""The ContractShield v0.1 ``RequestContext``: what the engine knows about one HTTP request.

Adapters (Envoy, HTTP API, middleware, client) build it; the engine only reads it. The JSON
form uses the camelCase field names of the ContractShield format; ``from_dict``/``to_dict``
convert. ``request.path`` is the path as received (undecoded, without the query); the engine
canonicalises it. Repeated query parameters are comma-joined, as Envoy does with headers.

``request.query`` is a map of strings. ``from_dict`` also takes what other policy enforcement
points send (upstream's Express PEP sends ``req.query`` as qs parses it): a query string left
in ``request.path`` is split off and parsed, as the Envoy adapter does; nested objects and
arrays are flattened to the keys they had on the wire (``{"f": {"u": x}}`` is ``f[u]``, a list
of plain values a repeated key), so every value reaches the checks as a value, never as JSON
text (docs/policy.md, "Query parameters").
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from dataclasses import field
from datetime import UTC, datetime
from typing import Any

from ._exceptions import InvalidContext
from ._frozen import frozen_dataclass
from ._http import query_pairs
from ._json import COMPACT

CONTEXT_VERSION = "0.1"
# Nesting a query object may have (qs itself stops at 5 by default); deeper is refused.
MAX_QUERY_DEPTH = 32


@frozen_dataclass
class BodyJson:
    """A parsed JSON (or form) body; ``sample`` may be any JSON value, ``None`` included.

    ``redacted``: the caller's adapter masked values in the sample (upstream's
    ``json.redacted``); the contract then checks its structure, not the masked values.
    """

    sample: Any
    redacted: bool = False


@frozen_dataclass
class Body:
    present: bool = False
    size_bytes: int = 0
    sha256: str | None = None
    raw: bytes | None = None
    json: BodyJson | None = None
    partial: bool = False  # Envoy truncated it (x-envoy-auth-partial-body: true)

    @property
    def redacted(self) -> bool:
        """The caller's adapter masked values in the parsed sample (``json.redacted``)."""
        return self.json is not None and self.json.redacted


EMPTY_BODY = Body()


@frozen_dataclass
class HttpRequest:
    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    route_id: str | None = None
    host: str | None = None
    scheme: str | None = None
    body: Body = EMPTY_BODY


@frozen_dataclass
class Identity:
    authenticated: bool = False
    subject: str | None = None
    tenant: str | None = None
    scopes: tuple[str, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict)


ANONYMOUS = Identity()


@frozen_dataclass
class ClientInfo:
    ip: str | None = None
    user_agent: str | None = None


@frozen_dataclass
class RuntimeInfo:
    service: str | None = None
    env: str | None = None
    language: str | None = None


@frozen_dataclass
class RequestContext:
    request: HttpRequest
    identity: Identity = ANONYMOUS
    client: ClientInfo = ClientInfo()
    runtime: RuntimeInfo = RuntimeInfo()
    id: str = ""
    timestamp: str = ""
    version: str = CONTEXT_VERSION

    @classmethod
    def from_dict(cls, data: Any) -> RequestContext:
        """Build from the JSON form; raises ``InvalidContext`` naming the bad field."""
        return _parse_context(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> RequestContext:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InvalidContext(f"context is not valid JSON: {exc}") from exc
        return _parse_context(data)

    def to_dict(self) -> dict[str, Any]:
        r = self.request
        body: dict[str, Any] = {"present": r.body.present, "sizeBytes": r.body.size_bytes}
        if r.body.sha256 is not None:
            body["sha256"] = r.body.sha256
        if r.body.raw is not None:
            try:
                body["raw"] = r.body.raw.decode("utf-8")
            except UnicodeDecodeError:
                body["rawBase64"] = base64.b64encode(r.body.raw).decode("ascii")
        if r.body.json is not None:
            body["json"] = {"sample": r.body.json.sample}
            if r.body.json.redacted:
                body["json"]["redacted"] = True
        if r.body.partial:
            body["partial"] = True
        request: dict[str, Any] = {
            "method": r.method,
            "path": r.path,
            "headers": dict(r.headers),
            "query": dict(r.query),
            "body": body,
        }
        for key, value in (
            ("routeId", r.route_id),
            ("contentType", r.content_type),
            ("host", r.host),
            ("scheme", r.scheme),
        ):
            if value is not None:
                request[key] = value
        i = self.identity
        return {
            "version": self.version,
            "id": self.id,
            "timestamp": self.timestamp,
            "request": request,
            "identity": {
                "authenticated": i.authenticated,
                "subject": i.subject,
                "tenant": i.tenant,
                "scopes": list(i.scopes),
                "claims": dict(i.claims),
            },
            "client": {"ip": self.client.ip, "userAgent": self.client.user_agent},
            "runtime": {
                "language": self.runtime.language,
                "service": self.runtime.service,
                "env": self.runtime.env,
            },
        }

    def to_json(self) -> str:
        return COMPACT.encode(self.to_dict())


def new_request_id() -> str:
    return uuid.uuid4().hex


def now_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _obj(data: Any, where: str) -> Mapping[str, Any]:
    if type(data) is dict:  # what JSON gives: no Mapping ABC check (~0.3 µs, ~8 per context)
        return data
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidContext(f"{where}: expected an object, got {type(data).__name__}")
    return data


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InvalidContext(f"{where}.{key}: expected a string, got {type(value).__name__}")


def _str_map(data: Any, where: str, *, lower: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in _obj(data, where).items():
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif not isinstance(value, str):
            value = json.dumps(value) if isinstance(value, dict) else str(value)
        out[key.lower() if lower else key] = value
    return out


def _parse_query(req: Mapping[str, Any], path: str) -> tuple[str, dict[str, str]]:
    """The path without query or fragment, and every query value as one string per name.

    Sources: ``request.query`` (an object, possibly nested, or a raw query string) and a query
    left in ``request.path``. A value the path repeats from the object is kept once (a caller
    that sends both sends the same parameters twice); other repeats are comma-joined.
    """
    raw = req.get("query")
    split = "?" in path or "#" in path
    if type(raw) is dict and not split:  # the common shape: flat, strings only
        for value in raw.values():
            if type(value) is not str:
                break
        else:
            return path, dict(raw)
    pairs: list[tuple[str, str]] = []
    if isinstance(raw, str):
        pairs = query_pairs(raw.removeprefix("?").partition("#")[0])
    else:
        for key, value in _obj(raw, "request.query").items():
            _flatten_query(str(key), value, pairs, str(key), 0)
    if split:
        path, _, rest = path.partition("?")
        path = path.partition("#")[0]  # a fragment is never the server's (as Envoy's adapter)
        if not path:
            raise InvalidContext("request.path: no path before the query")
        given = set(pairs)
        pairs += [p for p in query_pairs(rest.partition("#")[0]) if p not in given]
    out: dict[str, str] = {}
    for key, value in pairs:
        out[key] = f"{out[key]},{value}" if key in out else value
    return path, out


def _flatten_query(
    key: str, value: Any, pairs: list[tuple[str, str]], top: str, depth: int
) -> None:
    """Append ``value`` under its wire key: ``a[b]`` for an object member, ``a[0][b]`` for an
    object in a list, the key repeated for a list's plain values."""
    if isinstance(value, str):
        pairs.append((key, value))
    elif value is None:
        pairs.append((key, ""))  # ``?a``: the name without a value
    elif isinstance(value, bool):
        pairs.append((key, "true" if value else "false"))
    elif isinstance(value, int | float):
        pairs.append((key, json.dumps(value)))
    elif isinstance(value, Mapping | list | tuple):
        if depth >= MAX_QUERY_DEPTH:
            raise InvalidContext(
                f"request.query.{top}: nested deeper than {MAX_QUERY_DEPTH} levels"
            )
        if not value:
            pairs.append((key, ""))
        elif isinstance(value, Mapping):
            for name, item in value.items():
                _flatten_query(f"{key}[{name}]", item, pairs, top, depth + 1)
        else:
            for i, item in enumerate(value):
                nested = isinstance(item, Mapping | list | tuple)
                _flatten_query(f"{key}[{i}]" if nested else key, item, pairs, top, depth + 1)
    else:
        pairs.append((key, str(value)))


def _parse_body(data: Any) -> Body:
    b = _obj(data, "request.body")
    raw: bytes | None = None
    encoding = b.get("rawEncoding", "utf-8")
    if encoding not in ("utf-8", "utf8", "base64"):
        raise InvalidContext("request.body.rawEncoding: expected 'utf-8' or 'base64'")
    if isinstance(b.get("raw"), str) and encoding == "base64":
        try:
            raw = base64.b64decode(b["raw"], validate=True)
        except ValueError as exc:
            raise InvalidContext("request.body.raw: not valid base64 (rawEncoding)") from exc
    elif isinstance(b.get("raw"), str):
        raw = b["raw"].encode("utf-8", "surrogatepass")
    elif isinstance(b.get("rawBase64"), str):
        try:
            raw = base64.b64decode(b["rawBase64"], validate=True)
        except ValueError as exc:
            raise InvalidContext("request.body.rawBase64: not valid base64") from exc
    elif b.get("raw") is not None:
        raise InvalidContext("request.body.raw: expected a string")
    js = b.get("json")
    body_json = None
    if js is not None:
        if not isinstance(js, Mapping) or "sample" not in js:
            raise InvalidContext("request.body.json: expected an object with 'sample'")
        redacted = js.get("redacted", False)
        if not isinstance(redacted, bool):
            raise InvalidContext("request.body.json.redacted: expected a boolean")
        body_json = BodyJson(js["sample"], redacted)
    size = b.get("sizeBytes")
    if size is None:
        size = len(raw) if raw is not None else 0
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidContext("request.body.sizeBytes: expected a non-negative integer")
    present = b.get("present")
    if present is None:
        present = raw is not None or body_json is not None or size > 0
    return Body(
        present=bool(present),
        size_bytes=size,
        sha256=_opt_str(b, "sha256", "request.body"),
        raw=raw,
        json=body_json,
        partial=bool(b.get("partial", False)),
    )


def _parse_context(data: Any) -> RequestContext:
    root = _obj(data, "context")
    req = root.get("request")
    if not isinstance(req, Mapping):
        raise InvalidContext("request: required object is missing")
    method = req.get("method")
    path = req.get("path")
    if not isinstance(method, str) or not method:
        raise InvalidContext("request.method: required string is missing")
    if not isinstance(path, str) or not path:
        raise InvalidContext("request.path: required string is missing")
    headers = _str_map(req.get("headers"), "request.headers", lower=True)
    content_type = _opt_str(req, "contentType", "request")
    if content_type is None:
        content_type = headers.get("content-type")
    path, query = _parse_query(req, path)
    request = HttpRequest(
        method=method,
        path=path,
        headers=headers,
        query=query,
        content_type=content_type,
        route_id=_opt_str(req, "routeId", "request"),
        host=_opt_str(req, "host", "request"),
        scheme=_opt_str(req, "scheme", "request"),
        body=_parse_body(req.get("body")),
    )
    ident = _obj(root.get("identity"), "identity")
    scopes = ident.get("scopes") or ()
    if isinstance(scopes, str):
        scopes = scopes.split()
    if not isinstance(scopes, list | tuple) or not all(isinstance(s, str) for s in scopes):
        raise InvalidContext("identity.scopes: expected a list of strings")
    identity = Identity(
        authenticated=bool(ident.get("authenticated", False)),
        subject=_opt_str(ident, "subject", "identity"),
        tenant=_opt_str(ident, "tenant", "identity"),
        scopes=tuple(scopes),
        claims=dict(_obj(ident.get("claims"), "identity.claims")),
    )
    client = _obj(root.get("client"), "client")
    runtime = _obj(root.get("runtime"), "runtime")
    _check_webhook_hints(root.get("webhook"))
    return RequestContext(
        request=request,
        identity=identity,
        client=ClientInfo(
            ip=_opt_str(client, "ip", "client"), user_agent=_opt_str(client, "userAgent", "client")
        ),
        runtime=RuntimeInfo(
            service=_opt_str(runtime, "service", "runtime"),
            env=_opt_str(runtime, "env", "runtime"),
            language=_opt_str(runtime, "language", "runtime"),
        ),
        id=str(root.get("id") or ""),
        timestamp=str(root.get("timestamp") or ""),
        version=str(root.get("version") or CONTEXT_VERSION),
    )


def _check_webhook_hints(data: Any) -> None:
    """Accept upstream's ``webhook`` test hints, and never use them.

    ``signatureValid`` and ``replayed`` are claims any caller can make: the engine verifies
    signatures over the raw bytes and claims event ids itself, so the hints are checked for
    shape (a context stays well-formed) and then dropped.
    """
    hints = _obj(data, "webhook")
    _opt_str(hints, "provider", "webhook")
    for key in ("signatureValid", "replayed"):
        if hints.get(key) is not None and not isinstance(hints[key], bool):
            raise InvalidContext(f"webhook.{key}: expected a boolean")
