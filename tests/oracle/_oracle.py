"""Differential testing against openapi-core: the harness (tests/oracle and bench/openapi_oracle.py).

For one OpenAPI document: our policy is what ``extauthz policy from-openapi`` writes for it
(vulnerability checks off, so only the contract decides), loaded with ``load_policy``; the
oracle is openapi-core's request validator on the same document. Requests are generated from
the description with hypothesis-jsonschema: values drawn from each parameter's and body's
schema, serialized the way the description says (``style``/``explode``, ``encoding``), then
either sent as they are (valid: ALLOW expected) or after one mutation that makes them invalid
(BLOCK expected). Each request goes to us as Envoy sends it (a ``CheckRequest`` through the
adapter, then ``evaluate``) and to openapi-core as a WSGI request (werkzeug), from the same
bytes.
"""

from __future__ import annotations

import copy
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from extauthz.cli._policy import policy_text
from extauthz.engine import evaluate
from extauthz.engine.model import CompiledPolicy
from extauthz.envoy import check_request_to_context
from extauthz.policy import load_policy
from extauthz.policy._openapi import policy_from_spec

HOST = "http://api.test"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
BOUNDARY = "0racle-b0undary"
# Characters for values that end up in a path segment, a header or a cookie: a path segment
# may not be '.' or '..' nor hold '/', a header value has no control characters (Envoy refuses
# them before us); query and body values get the whole of Unicode.
SAFE = "^[A-Za-z0-9_~-]+$"
# Every request carries credentials (the shaped documents declare basic/bearer security,
# which openapi-core checks and the policy leaves to Envoy's filters).
AUTH = ("authorization", "Bearer oracle")
_DROP = {"example", "examples", "xml", "externalDocs", "discriminator", "description", "title"}
_FORMATS = {"date-time", "date", "email", "uri", "uuid", "ipv4", "ipv6", "hostname"}
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


# -- the document, for generation ---------------------------------------------------------------


def _resolve(doc: dict[str, Any], node: Any, depth: int = 0) -> Any:
    """``node`` with every local ``$ref`` inlined (request schemas here are not recursive)."""
    if depth > 40:
        raise ValueError("$ref nesting too deep to inline")
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = doc
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            return _resolve(doc, target, depth + 1)
        return {k: _resolve(doc, v, depth) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(doc, v, depth) for v in node]
    return node


def json_schema(s: Any, *, safe: bool = False, wire: bool = False, gen: bool = False) -> Any:
    """An OpenAPI 3.0 schema as draft-7 JSON Schema (inlined already).

    ``safe`` narrows strings to ``SAFE`` (path, header and cookie values); ``wire`` drops
    ``nullable`` (a query or form value cannot be null) and asks arrays and objects for one
    member (an empty one is not sent at all, so it would read as missing). ``format:
    binary`` stays (an annotation, it marks file parts) unless ``gen``.
    """
    if not isinstance(s, dict):
        return s
    out: dict[str, Any] = {}
    for k, v in s.items():
        if k in _DROP or k.startswith("x-") or k in ("nullable", "readOnly", "writeOnly"):
            continue
        if k == "properties":
            out[k] = {
                p: json_schema(ps, safe=safe, wire=wire, gen=gen)
                for p, ps in v.items()
                if not (isinstance(ps, dict) and ps.get("readOnly"))
            }
        elif k in ("items", "additionalProperties", "not"):
            out[k] = json_schema(v, safe=safe, wire=wire, gen=gen)
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = [json_schema(b, safe=safe, wire=wire, gen=gen) for b in v]
        elif k == "format":
            if v in _INT_RANGES:
                lo, hi = _INT_RANGES[v]
                out["minimum"] = max(lo, s.get("minimum", lo))
                out["maximum"] = min(hi, s.get("maximum", hi))
            elif v in _FORMATS or (v == "binary" and not gen):
                out[k] = v
        elif k in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(v, bool):
            bound = s.get("minimum" if k == "exclusiveMinimum" else "maximum")
            if v and bound is not None:
                out[k] = bound
        else:
            out[k] = v
    if "exclusiveMinimum" in out and out.get("minimum") == out["exclusiveMinimum"]:
        del out["minimum"]
    if "exclusiveMaximum" in out and out.get("maximum") == out["exclusiveMaximum"]:
        del out["maximum"]
    if "required" in out and "properties" in out:
        out["required"] = [r for r in out["required"] if r in out["properties"]]
    if s.get("nullable") and not wire and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else out["type"]
    kind = out.get("type")
    if safe and kind == "string" and not ({"enum", "format", "pattern"} & out.keys()):
        out["pattern"] = SAFE
        out.setdefault("minLength", 1)
    if wire and kind == "array":
        out["minItems"] = max(1, out.get("minItems", 0))
    if wire and kind == "object" and (out.get("properties") or out.get("additionalProperties")):
        out["minProperties"] = max(1, out.get("minProperties", 0))
    if (wire or safe) and "string" in _types(out) and "enum" not in out:
        out.setdefault("minLength", 1)  # an empty value reads as absent to some decoders
    return out


def _types(s: dict[str, Any]) -> set[str]:
    t = s.get("type")
    return {t} if isinstance(t, str) else set(t or ())


@dataclass
class Param:
    name: str
    loc: str
    required: bool
    style: str
    explode: bool
    schema: dict[str, Any]  # for validity (JSON Schema)
    gen: dict[str, Any]  # for generation (narrowed)


@dataclass
class Media:
    schema: dict[str, Any]
    gen: dict[str, Any]
    encoding: dict[str, Any]


@dataclass(repr=False)
class Operation:
    def __repr__(self) -> str:  # short in Hypothesis' reports
        return f"Operation({self.method} {self.path})"

    method: str
    path: str  # the document's template
    params: list[Param]
    media: dict[str, Media]
    body_required: bool


_DEFAULT_STYLE = {"query": "form", "cookie": "form", "path": "simple", "header": "simple"}


def operations(doc: dict[str, Any]) -> list[Operation]:
    ops = []
    for path, item in doc.get("paths", {}).items():
        for method in ("get", "put", "post", "delete", "patch", "head", "options"):
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            # only what a request carries (responses' $ref chains need not be inlined)
            declared = {(p["name"], p["in"]): p for p in _resolve(doc, item.get("parameters", []))}
            declared.update(
                {(p["name"], p["in"]): p for p in _resolve(doc, op.get("parameters", []))}
            )
            params = []
            for p in declared.values():
                style = p.get("style", _DEFAULT_STYLE[p["in"]])
                safe = p["in"] != "query"
                params.append(
                    Param(
                        p["name"],
                        p["in"],
                        bool(p.get("required")),
                        style,
                        bool(p.get("explode", style == "form")),
                        json_schema(p.get("schema", {})),
                        json_schema(p.get("schema", {}), safe=safe, wire=True, gen=True),
                    )
                )
            body = _resolve(doc, op.get("requestBody") or {})
            media = {
                m: Media(
                    json_schema(c.get("schema", {})),
                    json_schema(c.get("schema", {}), wire=m in (FORM, MULTIPART), gen=True),
                    c.get("encoding", {}),
                )
                for m, c in body.get("content", {}).items()
            }
            ops.append(Operation(method.upper(), path, params, media, bool(body.get("required"))))
    return ops


def server_prefix(doc: dict[str, Any]) -> str:
    """The path of ``servers[0].url``, variables at their defaults (what OpenAPI says)."""
    servers = doc.get("servers") or [{"url": "/"}]
    url = servers[0]["url"]
    for name, var in servers[0].get("variables", {}).items():
        url = url.replace("{" + name + "}", var["default"])
    return urllib.parse.urlsplit(url).path.rstrip("/")


# -- the two deciders ---------------------------------------------------------------------------


@dataclass(repr=False)
class Subject:
    """One document, with our compiled policy and openapi-core's validator for it."""

    def __repr__(self) -> str:  # Hypothesis prints the strategy's arguments
        return f"Subject({self.name!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis' own printer
        printer.text(repr(self))

    name: str
    doc: dict[str, Any]
    policy: CompiledPolicy
    oracle: OpenAPI
    prefix: str
    ops: list[Operation]


def load_subject(name: str, doc: dict[str, Any], workdir: Path) -> Subject:
    """Write ``doc``, make its policy the way ``extauthz policy from-openapi`` does, load it."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = workdir / f"{name}.json"
    spec.write_text(json.dumps(doc, indent=1))
    made = policy_from_spec(spec, f"./{spec.name}")
    checks = ("prototypePollution", "pathTraversal", "ssrfInternal")
    made.doc["defaults"]["vulnerabilityChecks"] = dict.fromkeys(checks, False)
    policy_file = workdir / f"{name}.policy.yaml"
    policy_file.write_text(policy_text(made.doc, made.skipped, made.notes, spec.name))
    prefix = server_prefix(doc)
    oracle_doc = copy.deepcopy(doc)
    oracle_doc["servers"] = [{"url": HOST + prefix}]
    for item in oracle_doc["paths"].values():
        for op in item.values():
            if isinstance(op, dict):
                op.pop("servers", None)
    # openapi-core asks jsonschema for ``uri``, which checks it only with ``rfc3987``
    # installed (otherwise every ``format: uri`` value is an error): a scheme and no spaces.
    config = Config(extra_format_validators={"uri": _is_uri})
    api = OpenAPI.from_dict(oracle_doc, config=config)
    return Subject(name, doc, load_policy(policy_file), api, prefix, operations(doc))


def _is_uri(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    scheme = urllib.parse.urlsplit(value).scheme
    return bool(scheme) and not any(c.isspace() for c in value)


@dataclass(frozen=True)
class Req:
    method: str
    path: str  # percent-encoded
    query: str  # raw query string
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


def ours(policy: CompiledPolicy, req: Req) -> tuple[bool, tuple[str, ...]]:
    """Our decision, for the request as Envoy's ``CheckRequest`` carries it."""
    check = CheckRequest()
    http = check.attributes.request.http
    http.id = "oracle"
    http.method = req.method
    http.path = req.path + ("?" + req.query if req.query else "")
    http.host = "api.test"
    http.scheme = "http"
    for k, v in req.headers:
        http.headers[k] = f"{http.headers[k]},{v}" if k in http.headers else v
    if req.body:
        http.raw_body = req.body
        http.headers["content-length"] = str(len(req.body))
    decision = evaluate(policy, check_request_to_context(check))
    return decision.allowed, decision.rule_ids


def oracle(api: OpenAPI, req: Req) -> tuple[bool | None, str]:
    """openapi-core's verdict: True valid, False invalid, None when it cannot decide (it
    raised something other than a validation error: a style it does not implement, ...)."""
    env = EnvironBuilder(
        method=req.method,
        base_url=HOST,
        path=urllib.parse.unquote(req.path),
        query_string=req.query,
        headers=list(req.headers),
        data=req.body,
    ).get_environ()
    env["RAW_URI"] = env["REQUEST_URI"] = req.path + ("?" + req.query if req.query else "")
    try:
        result = api.unmarshal_request(WerkzeugOpenAPIRequest(Request(env)))
    except Exception as exc:
        return None, f"raised {type(exc).__name__}: {exc}"
    if not result.errors:
        return True, ""
    return _verdict(result.errors)


# openapi-core reports a style or media type it does not implement as the cause of a
# validation error; those are not verdicts about the request.
_UNDECIDED = (KeyError, NotImplementedError)


def _verdict(errors: list[Exception]) -> tuple[bool | None, str]:
    words = []
    for e in errors:
        cause = e.__cause__
        words.append(f"{type(e).__name__}({cause!r})"[:4000])
        if isinstance(cause, _UNDECIDED) or "deserialize" in type(cause).__name__.lower():
            return None, "; ".join(words)
    return False, "; ".join(words)


# -- generation ---------------------------------------------------------------------------------


def _prim(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return repr(v)
    return str(v)


def _q(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def serialize_query(p: Param, v: Any) -> list[tuple[str, str]]:
    """(key, value) pairs, unencoded, for a query or cookie parameter."""
    n = p.name
    if p.style == "deepObject" and isinstance(v, dict | list):
        return _brackets(n, v)  # arrays as Stripe sends them: expand[0]=a
    if isinstance(v, list):
        if p.style == "form" and p.explode:
            return [(n, _prim(i)) for i in v]
        sep = {"form": ",", "spaceDelimited": " ", "pipeDelimited": "|"}[p.style]
        return [(n, sep.join(_prim(i) for i in v))]
    if isinstance(v, dict):
        if p.style == "deepObject":
            return _brackets(n, v)
        if p.explode:
            return [(k, _prim(i)) for k, i in v.items()]
        return [(n, ",".join(f"{k},{_prim(i)}" for k, i in v.items()))]
    return [(n, _prim(v))]


def _brackets(prefix: str, v: Any) -> list[tuple[str, str]]:
    if isinstance(v, dict):
        return [pair for k, i in v.items() for pair in _brackets(f"{prefix}[{k}]", i)]
    if isinstance(v, list):
        return [pair for j, i in enumerate(v) for pair in _brackets(f"{prefix}[{j}]", i)]
    return [(prefix, _prim(v))]


def serialize_simple(p: Param, v: Any) -> str:
    """A path or header value (unencoded), in ``simple``/``label``/``matrix`` style."""
    if isinstance(v, list):
        items = [_prim(i) for i in v]
    elif isinstance(v, dict):
        items = [f"{k}={_prim(i)}" if p.explode else f"{k},{_prim(i)}" for k, i in v.items()]
    else:
        items = [_prim(v)]
    if p.style == "label":
        return "." + ("." if p.explode else ",").join(items)
    if p.style == "matrix":
        if p.explode and isinstance(v, list):
            return "".join(f";{p.name}={i}" for i in items)
        return f";{p.name}=" + ",".join(items)
    return ",".join(items)


def serialize_form(media: Media, value: dict[str, Any]) -> bytes:
    pairs: list[tuple[str, str]] = []
    for k, v in value.items():
        enc = media.encoding.get(k, {})
        style = enc.get("style", "form")
        explode = enc.get("explode", style == "form")
        if style == "deepObject" and isinstance(v, dict | list):
            pairs.extend(_brackets(k, v))
        elif isinstance(v, list):
            pairs.extend((k, _prim(i)) for i in v) if explode else pairs.append(
                (
                    k,
                    {"spaceDelimited": " ", "pipeDelimited": "|"}.get(style, ",").join(
                        map(_prim, v)
                    ),
                )
            )
        elif isinstance(v, dict):
            pairs.extend(_brackets(k, v))
        else:
            pairs.append((k, _prim(v)))
    return urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote).encode()


def serialize_multipart(media: Media, value: dict[str, Any], props: dict[str, Any]) -> bytes:
    out = []

    def part(name: str, data: bytes, filename: str | None = None, ctype: str | None = None) -> None:
        head = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            head += f'; filename="{filename}"'
        if ctype:
            head += f"\r\nContent-Type: {ctype}"
        out.append(f"--{BOUNDARY}\r\n{head}\r\n\r\n".encode() + data + b"\r\n")

    for k, v in value.items():
        enc = media.encoding.get(k, {})
        if props.get(k, {}).get("format") == "binary":
            part(k, str(v).encode(), "upload.bin", "application/octet-stream")
        elif isinstance(v, dict) and enc.get("style") == "deepObject":
            for name, item in _brackets(k, v):
                part(name, item.encode())
        elif isinstance(v, dict):
            part(k, json.dumps(v).encode(), ctype="application/json")
        elif isinstance(v, list):
            for item in v:
                part(k, _prim(item).encode())
        else:
            part(k, _prim(v).encode())
    return b"".join(out) + f"--{BOUNDARY}--\r\n".encode()


@dataclass
class Case:
    """One generated request and what it should get."""

    op: Operation
    params: dict[tuple[str, str], Any]
    body: tuple[str, Any] | None
    mutation: str | None = None  # None: the request is valid
    content_type: str | None = None  # overrides the body's media type (a mutation)
    raw_body: bytes | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.mutation is None


def build(subject: Subject, case: Case) -> Req:
    op = case.op
    path = op.path
    query: list[tuple[str, str]] = []
    headers: list[tuple[str, str]] = [AUTH]
    cookies: list[str] = []
    for p in op.params:
        if (p.name, p.loc) not in case.params:
            continue
        v = case.params[(p.name, p.loc)]
        if p.loc == "path":
            # the style's delimiters stay literal (sub-delims a path segment may hold)
            value = urllib.parse.quote(serialize_simple(p, v), safe=";=,.")
            path = path.replace("{" + p.name + "}", value)
        elif p.loc == "query":
            query.extend(serialize_query(p, v))
        elif p.loc == "header":
            headers.append((p.name.lower(), serialize_simple(p, v)))
        elif p.loc == "cookie":
            cookies.extend(f"{k}={_q(i)}" for k, i in serialize_query(p, v))
    if cookies:
        headers.append(("cookie", "; ".join(cookies)))
    body = b""
    if case.body is not None:
        media_type, value = case.body
        media = op.media.get(media_type)
        ctype = case.content_type or media_type
        if case.raw_body is not None:
            body = case.raw_body
        elif media_type == FORM and media is not None:
            body = serialize_form(media, value)
        elif media_type == MULTIPART and media is not None:
            body = serialize_multipart(media, value, media.schema.get("properties", {}))
            ctype = f"{MULTIPART}; boundary={BOUNDARY}"
        else:
            body = json.dumps(value, ensure_ascii=False).encode()
        if body:
            headers.append(("content-type", ctype))
    qs = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    return Req(op.method, subject.prefix + path, qs, tuple(headers), body)


def _pick(draw: Callable[..., Any], items: Any) -> Any:
    """One of ``items``, drawn by index (Hypothesis reprs a ``sampled_from``'s elements, and
    schemas and long strings make that slow)."""
    items = list(items)
    return items[draw(st.integers(0, len(items) - 1))]


def _draw_value(draw: Callable[..., Any], schema: Any) -> Any:
    """A value of ``schema``: objects and ``anyOf``/``oneOf`` branches drawn here, the rest by
    hypothesis-jsonschema (whose object strategy does not run on current Hypothesis: it calls
    ``cu.many().more()``, which Hypothesis 6.150+ replaced)."""
    if not isinstance(schema, dict):
        return draw(from_schema(schema, allow_x00=False))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            rest = {k: v for k, v in schema.items() if k != key}
            branches = [{**rest, **b} for b in schema[key]]
            for _ in range(len(branches)):
                branch = _pick(draw, branches)
                value = _draw_value(draw, branch)
                if key == "anyOf" or sum(_valid(b, value) for b in branches) == 1:
                    return value
            assume(False)
    if "object" in _types(schema) or (schema.get("properties") and "type" not in schema):
        props = schema.get("properties", {})
        required = [k for k in schema.get("required", ()) if k in props]
        out = {}
        for k, ps in props.items():
            if k in required or draw(st.booleans()):
                out[k] = _draw_value(draw, ps)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and (not props or draw(st.booleans())):
            for k in draw(st.lists(st.from_regex(r"\A[a-z_]{1,12}\Z"), max_size=3, unique=True)):
                if k not in props:
                    out[k] = _draw_value(draw, extra)
        assume(len(out) >= schema.get("minProperties", 0))
        return out
    if "array" in _types(schema) and isinstance(schema.get("items"), dict):
        lo, hi = (
            schema.get("minItems", 0),
            schema.get("maxItems", max(schema.get("minItems", 0), 4)),
        )
        n = draw(st.integers(lo, min(hi, lo + 4)))
        return [_draw_value(draw, schema["items"]) for _ in range(n)]
    return draw(from_schema(schema, allow_x00=False))


@st.composite
def cases(draw: Callable[..., Any], subject: Subject) -> Case:
    """A valid request for one of the subject's operations, or one mutation of it."""
    op = _pick(draw, subject.ops)
    params: dict[tuple[str, str], Any] = {}
    for p in op.params:
        if p.required or draw(st.booleans()):
            params[(p.name, p.loc)] = _draw_value(draw, p.gen)
    body = None
    if op.media and (op.body_required or draw(st.booleans())):
        media_type = _pick(draw, sorted(op.media))
        body = (media_type, _draw_value(draw, op.media[media_type].gen))
    case = Case(op, params, body)
    choices = [m for m, ok in _MUTATIONS.items() if ok(case)]
    name = _pick(draw, [None, *choices]) if choices else None
    if name is not None:
        _APPLY[name](draw, case)
        case.mutation = case.mutation or name
        if not _still_invalid(case):
            case.mutation = None
    return case


# -- one mutation -------------------------------------------------------------------------------


def _invalid_scalar(s: dict[str, Any]) -> list[Any]:
    """Values of a scalar schema that break it and survive serialization as such."""
    kinds = _types(s)
    out: list[Any] = []
    if "enum" in s:
        out.append("zz-not-in-enum")
    if kinds & {"integer", "number"}:
        out.append("notanumber")
        if "maximum" in s:
            out.append(int(s["maximum"]) + 1)
        if "minimum" in s:
            out.append(int(s["minimum"]) - 1)
        if "integer" in kinds and "number" not in kinds:
            out.append(1.5)
    if kinds == {"boolean"}:
        out.append("maybe")
    if kinds == {"string"}:
        if "maxLength" in s:
            out.append("a" * (s["maxLength"] + 1))
        if s.get("minLength", 0) > 1:
            out.append("a")
        if s.get("format") == "uri":
            out.append("no scheme here")
        if s.get("format") == "date-time":
            out.append("yesterday")
    return [v for v in out if not _valid(s, v)]


def _invalid_value(s: dict[str, Any]) -> list[Any]:
    """Values that break ``s`` (scalars, or an array/object with one broken member)."""
    if "array" in _types(s) and isinstance(s.get("items"), dict):
        return [[v] for v in _invalid_scalar(s["items"])] + ["notanarray"] * (
            s["items"].get("type") not in (None, "string")
        )
    if "object" in _types(s) and s.get("properties"):
        out = []
        for k, ps in s["properties"].items():
            out.extend({k: v} for v in _invalid_scalar(ps))
        return out
    return _invalid_scalar(s)


def _valid(schema: Any, value: Any) -> bool:
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).is_valid(
        value
    )


def _missing_param_ok(case: Case) -> bool:
    return any(p.required and p.loc != "path" for p in case.op.params)


def _missing_param(draw: Callable[..., Any], case: Case) -> None:
    p = _pick(draw, [p for p in case.op.params if p.required and p.loc != "path"])
    case.params.pop((p.name, p.loc), None)


def _bad_params(case: Case) -> list[tuple[Param, list[Any]]]:
    out = []
    for p in case.op.params:
        bad = _invalid_value(p.schema)
        if p.loc != "query":  # a path, header or cookie value stays in SAFE's characters
            bad = [v for v in bad if isinstance(v, int | float) or str(v).isalnum()]
        if p.style == "deepObject" and not all(isinstance(v, dict) for v in bad):
            bad = [v for v in bad if isinstance(v, dict)]
        if bad:
            out.append((p, bad))
    return out


def _bad_param(draw: Callable[..., Any], case: Case) -> None:
    p, bad = _pick(draw, _bad_params(case))
    case.params[(p.name, p.loc)] = _pick(draw, bad)


def _body_props(case: Case) -> dict[str, Any]:
    if case.body is None:
        return {}
    return case.op.media[case.body[0]].schema.get("properties", {})


def _bad_body_ok(case: Case) -> bool:
    return case.body is not None and (
        case.body[0] not in (FORM, MULTIPART) or bool(_bad_props(case))
    )


def _bad_props(case: Case) -> list[tuple[str, list[Any]]]:
    out = []
    for k, ps in _body_props(case).items():
        bad = _invalid_scalar(ps)
        if case.body is not None and case.body[0] == MULTIPART:
            bad = [v for v in bad if not isinstance(v, dict | list)]
        if bad:
            out.append((k, bad))
    return out


def _bad_body(draw: Callable[..., Any], case: Case) -> None:
    assert case.body is not None
    media_type, value = case.body
    schema = case.op.media[media_type].schema
    if media_type not in (FORM, MULTIPART) and (not _bad_props(case) or draw(st.booleans())):
        wrong = [v for v in ("text", 5, [1], {"zz": 1}, None, True) if not _valid(schema, v)]
        case.body = (media_type, _pick(draw, wrong))
        return
    k, bad = _pick(draw, _bad_props(case))
    case.body = (media_type, {**value, k: _pick(draw, bad)})


def _missing_prop_ok(case: Case) -> bool:
    # a form left empty is no body at all (valid where the body is optional)
    return (
        case.body is not None
        and isinstance(case.body[1], dict)
        and len(case.body[1]) > 1
        and any(r in case.body[1] for r in case.op.media[case.body[0]].schema.get("required", ()))
    )


def _missing_prop(draw: Callable[..., Any], case: Case) -> None:
    assert case.body is not None
    media_type, value = case.body
    required = case.op.media[media_type].schema.get("required", ())
    k = _pick(draw, [r for r in required if r in value])
    case.body = (media_type, {i: v for i, v in value.items() if i != k})


def _unknown_prop_ok(case: Case) -> bool:
    return (
        case.body is not None
        and isinstance(case.body[1], dict)
        and case.op.media[case.body[0]].schema.get("additionalProperties") is False
    )


def _unknown_prop(draw: Callable[..., Any], case: Case) -> None:
    assert case.body is not None
    media_type, value = case.body
    case.body = (media_type, {**value, "zz_undeclared": "1"})


def _missing_body_ok(case: Case) -> bool:
    return case.body is not None and case.op.body_required


def _missing_body(draw: Callable[..., Any], case: Case) -> None:
    case.body = None


def _media_type_ok(case: Case) -> bool:
    return case.body is not None and "text/plain" not in case.op.media


def _media_type(draw: Callable[..., Any], case: Case) -> None:
    assert case.body is not None
    case.content_type = "text/plain"
    case.raw_body = b"plain text"


def _body_on_bodiless_ok(case: Case) -> bool:
    return not case.op.media


def _body_on_bodiless(draw: Callable[..., Any], case: Case) -> None:
    case.body = ("application/json", {"a": 1})


_MUTATIONS: dict[str, Callable[[Case], bool]] = {
    "param.missing": _missing_param_ok,
    "param.invalid": lambda c: bool(_bad_params(c)),
    "body.invalid": _bad_body_ok,
    "body.property.missing": _missing_prop_ok,
    "body.property.unknown": _unknown_prop_ok,
    "body.missing": _missing_body_ok,
    "body.mediaType": _media_type_ok,
    "body.undeclared": _body_on_bodiless_ok,
}
_APPLY: dict[str, Callable[[Callable[..., Any], Case], None]] = {
    "param.missing": _missing_param,
    "param.invalid": _bad_param,
    "body.invalid": _bad_body,
    "body.property.missing": _missing_prop,
    "body.property.unknown": _unknown_prop,
    "body.missing": _missing_body,
    "body.mediaType": _media_type,
    "body.undeclared": _body_on_bodiless,
}


def _still_invalid(case: Case) -> bool:
    """The mutation broke the request by the description's own schemas (not a no-op)."""
    if case.mutation in ("param.missing", "body.missing", "body.mediaType", "body.undeclared"):
        return True
    for p in case.op.params:
        key = (p.name, p.loc)
        if key in case.params and not _valid(p.schema, case.params[key]):
            return True
    if case.body is not None and case.body[0] in case.op.media:
        return not _valid(case.op.media[case.body[0]].schema, case.body[1])
    return False


# -- comparing ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    req: Req
    ours: bool
    hits: tuple[str, ...]
    oracle: bool | None
    oracle_says: str

    @property
    def agree(self) -> bool:
        return self.ours == self.oracle

    @property
    def we_are_right(self) -> bool:
        return self.ours == self.case.valid


def decide(subject: Subject, case: Case) -> Outcome:
    req = build(subject, case)
    allowed, hits = ours(subject.policy, req)
    verdict, says = oracle(subject.oracle, req)
    return Outcome(case, req, allowed, hits, verdict, says)


def describe(o: Outcome) -> str:
    return (
        f"{o.req.method} {o.req.path}?{o.req.query} headers={o.req.headers[1:]} "
        f"body={o.req.body[:300]!r} [{o.case.mutation or 'valid'}] "
        f"ours={'ALLOW' if o.ours else 'BLOCK'} {o.hits} oracle={o.oracle} {o.oracle_says[:600]}"
    )


def iter_subjects(workdir: Path, *, stripe_ops: int = 60) -> Iterator[Subject]:
    """The OAI-shaped examples, then Stripe- and GitHub-shaped generated documents."""
    from bench import specgen
    from tests.oracle._documents import OAI_EXAMPLES_AND_STYLES

    for name, make in OAI_EXAMPLES_AND_STYLES.items():
        yield load_subject(name, make(), workdir)
    stripe = specgen.stripe_like(7, operations=stripe_ops, schemas=60)
    yield load_subject("stripe-like", stripe, workdir)
    yield load_subject("stripe-like-plain", without_unsupported_styles(stripe), workdir)
    yield load_subject(
        "github-like", specgen.github_like(7, operations=stripe_ops, schemas=60), workdir
    )


# -- openapi-core's known errors ----------------------------------------------------------------

_NESTED = re.compile(r"%5B[^&=]*%5D%5B")  # a key with two bracket levels: a[b][c]=


def oracle_error(o: Outcome) -> str | None:
    """Why openapi-core's verdict on ``o`` is wrong, for a reason pinned in
    tests/oracle/test_openapi_oracle.py and docs/policy.md; None when unexplained."""
    if o.oracle is None:
        return "undecided"  # a style it does not implement (deepObject arrays, anyOf)
    if o.case.mutation == "body.undeclared" and o.oracle:
        return "body without requestBody"  # it validates no body it was not told about
    form = o.case.body is not None and o.case.body[0] == FORM and o.case.raw_body is None
    multipart = o.case.body is not None and o.case.body[0] == MULTIPART
    if o.case.mutation == "body.property.unknown" and o.oracle and (form or multipart):
        return "form keys outside the schema dropped"  # it builds the object from `properties`
    if o.oracle and multipart and o.case.mutation == "body.invalid":
        props = o.case.op.media[MULTIPART].schema.get("properties", {})
        binary = [k for k, ps in props.items() if ps.get("format") == "binary"]
        if any(not _valid(props[k], o.case.body[1].get(k)) for k in binary):  # type: ignore[index]
            return "binary length unchecked"  # a file part is bytes: maxLength passes them
    if o.case.valid and o.oracle is False and multipart and "is not of type" in o.oracle_says:
        # a part's text against `type: integer` (not coerced), or the parts of an array with an
        # `encoding` entry read as bytes (OpenAPI's default for string items is text/plain)
        return "multipart text not coerced, or array parts as bytes"
    spaced = [p.name for p in o.case.op.params if p.style == "spaceDelimited"]
    if o.oracle is False and any(f"{n}=" in o.req.query and "%20" in o.req.query for n in spaced):
        return "spaceDelimited not split"  # 'a b' read as the one item 'a b
    if o.case.valid and o.oracle is False and form and _NESTED.search(o.req.body.decode()):
        return "nested deepObject"  # it reads one bracket level, as OpenAPI defines deepObject
    styled = [p for p in o.case.op.params if p.loc == "path" and p.style in ("label", "matrix")]
    if o.oracle is False and styled and "MissingRequiredParameter" in o.oracle_says:
        return "label/matrix path"  # it finds no value for a label or matrix path parameter
    if o.case.mutation == "body.property.missing" and o.oracle and o.case.body is not None:
        schema = o.case.op.media[o.case.body[0]].schema
        props = schema.get("properties", {})
        gone = [r for r in schema.get("required", ()) if r not in o.case.body[1]]
        if gone and all("default" in props.get(r, {}) for r in gone):
            return "default fills a required property"
    return None


def without_unsupported_styles(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the shapes openapi-core cannot deserialize rewritten to ones it can, so it
    has a verdict on the rest of a Stripe-shaped operation: ``deepObject`` arrays become
    exploded ``form`` arrays, and an ``anyOf`` parameter or form property with an object
    branch keeps that branch alone."""
    doc = copy.deepcopy(doc)

    def plain(schema: dict[str, Any]) -> dict[str, Any]:
        for branch in schema.get("anyOf", ()):
            if isinstance(branch, dict) and branch.get("type") == "object":
                rest = {k: v for k, v in schema.items() if k != "anyOf"}
                return {**rest, **branch}
        return schema

    for item in doc["paths"].values():
        for op in item.values():
            if not isinstance(op, dict):
                continue
            for p in op.get("parameters", []):
                if "schema" in p:
                    p["schema"] = plain(p["schema"])
                    if p.get("style") == "deepObject" and p["schema"].get("type") == "array":
                        p["style"] = "form"
            for media in op.get("requestBody", {}).get("content", {}).values():
                props = media.get("schema", {}).get("properties", {})
                for k in list(props):
                    props[k] = plain(props[k])
                for k, enc in media.get("encoding", {}).items():
                    if enc.get("style") == "deepObject" and props.get(k, {}).get("type") == "array":
                        enc["style"] = "form"
    return doc
