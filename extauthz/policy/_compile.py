"""Compiling a checked policy document into an immutable ``CompiledPolicy``.

Every problem is collected (not only the first) with its path inside the policy. Schema files
are read relative to the policy file; secrets named by ``secretRef`` are read from the
environment here, at load, so a missing secret refuses the policy instead of failing requests.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._exceptions import PolicyProblem
from ..engine import cel as cel_mod
from ..engine.contract import Contract, SchemaProblem, compile_contract
from ..engine.limits import Limits
from ..engine.matcher import Pattern, PatternError, RouteMatcher, parse_pattern
from ..engine.model import CompiledPolicy, CompiledRoute, Defaults
from ..engine.vulnerability import DEFAULT_ENABLED, OFF, Check, VulnerabilityConfig
from ..engine.webhook import DEFAULT_TOLERANCE, WebhookConfig
from ._loader import parse_schema_file
from ._schema import format_path, structure_problems

RESERVED_PREFIXES = ("vulnerability.", "limit.", "contract.", "webhook.", "request.", "route.")
MAX_SCHEMA_BYTES = 4 * 1024 * 1024
_ATTRS = {
    "prototypePollution": "prototype_pollution",
    "pathTraversal": "path_traversal",
    "ssrfInternal": "ssrf_internal",
    "commandInjection": "command_injection",
    "nosqlInjection": "nosql_injection",
}


class _Collector:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[PolicyProblem] = []

    def add(self, path: list[Any] | str, reason: str) -> None:
        where = path if isinstance(path, str) else format_path(path)
        self.problems.append(PolicyProblem(self.source, where, reason))


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(d: Mapping[str, Any], key: str, default: int) -> int:
    """The integer at ``key``; a wrong type was already reported as a problem."""
    value = d.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(d: Mapping[str, Any], key: str, default: str) -> str:
    value = d.get(key)
    return value if isinstance(value, str) else default


def _limits(raw: Any, base: Limits) -> Limits:
    d = _obj(raw)
    return Limits(
        max_body_bytes=_int(d, "maxBodyBytes", base.max_body_bytes),
        max_json_depth=_int(d, "maxJsonDepth", base.max_json_depth),
        max_array_length=_int(d, "maxArrayLength", base.max_array_length),
    )


def _check(value: Any, base: Check) -> Check:
    if value is True:
        return Check(True, None)
    if value is False:
        return OFF
    if isinstance(value, Mapping):
        fields = value.get("fields")
        return Check(
            value.get("enabled", True) is not False,
            tuple(str(f) for f in fields) if isinstance(fields, list) and fields else None,
        )
    return base


def _vulns(raw: Any, base: VulnerabilityConfig) -> VulnerabilityConfig:
    d = _obj(raw)
    kwargs = {
        attr: _check(d.get(name), getattr(base, attr)) if name in d else getattr(base, attr)
        for name, attr in _ATTRS.items()
    }
    return VulnerabilityConfig(**kwargs)


def compile_document(
    doc: Any, *, source: str, base_dir: Path, policy_bytes: bytes, loaded_at: float | None = None
) -> tuple[CompiledPolicy | None, list[PolicyProblem]]:
    """Compile a parsed policy document; return (policy, []) or (None, problems)."""
    out = _Collector(source)
    out.problems.extend(structure_problems(doc, source))
    if not isinstance(doc, Mapping):
        if not out.problems:
            out.add("", "a policy must be a mapping")
        return None, out.problems
    hasher = hashlib.sha256(policy_bytes)
    files: list[Path] = []
    d = _obj(doc.get("defaults"))
    response = _obj(d.get("response"))
    builtin = VulnerabilityConfig(
        **{attr: Check(DEFAULT_ENABLED[name]) if DEFAULT_ENABLED[name] else OFF
           for name, attr in _ATTRS.items()}
    )  # fmt: skip
    defaults = Defaults(
        mode=_str(d, "mode", "enforce"),
        unmatched_route_action=_str(d, "unmatchedRouteAction", "allow"),
        block_status_code=_int(response, "blockStatusCode", 403),
        malformed_status_code=_int(response, "malformedStatusCode", 400),
        limits=_limits(d.get("limits"), Limits()),
        vulnerability=_vulns(d.get("vulnerabilityChecks"), builtin),
    )
    routes: list[CompiledRoute] = []
    seen_ids: dict[str, int] = {}
    seen_match: dict[tuple[str, tuple[str, ...]], int] = {}
    schema_cache: dict[Path, tuple[Any, str | None]] = {}
    raw_routes = doc.get("routes")
    for i, r in enumerate(raw_routes if isinstance(raw_routes, list) else []):
        if not isinstance(r, Mapping):
            continue
        route = _compile_route(
            r, i, defaults, out, base_dir, hasher, files, schema_cache, seen_ids, seen_match
        )
        if route is not None:
            routes.append(route)
    if out.problems:
        return None, out.problems
    try:
        matcher = RouteMatcher((r.methods, r.pattern, r) for r in routes)
    except PatternError as exc:  # duplicates are caught above; this is a safety net
        out.add("routes", str(exc))
        return None, out.problems
    max_body = max([defaults.limits.max_body_bytes, *(r.limits.max_body_bytes for r in routes)])
    policy = CompiledPolicy(
        version="sha256:" + hasher.hexdigest()[:12],
        loaded_at=time.time() if loaded_at is None else loaded_at,
        source=source,
        files=tuple(files),
        route_ids=tuple(r.id for r in routes),
        max_body_bytes=max_body,
        defaults=defaults,
        routes=tuple(routes),
        routes_by_id={r.id: r for r in routes},
        matcher=matcher,
    )
    return policy, []


def _compile_route(
    r: Mapping[str, Any],
    i: int,
    defaults: Defaults,
    out: _Collector,
    base_dir: Path,
    hasher: Any,
    files: list[Path],
    schema_cache: dict[Path, tuple[Any, str | None]],
    seen_ids: dict[str, int],
    seen_match: dict[tuple[str, tuple[str, ...]], int],
) -> CompiledRoute | None:
    at: list[Any] = ["routes", i]
    ok = True
    route_id = r.get("id")
    if isinstance(route_id, str):
        if route_id in seen_ids:
            out.add(
                [*at, "id"], f"duplicate route id {route_id!r} (also routes[{seen_ids[route_id]}])"
            )
            ok = False
        seen_ids.setdefault(route_id, i)
    else:
        ok = False
    match = _obj(r.get("match"))
    method = match.get("method", "*")
    methods = tuple(method) if isinstance(method, list) else (method,)
    pattern: Pattern | None = None
    if isinstance(match.get("path"), str):
        try:
            pattern = parse_pattern(match["path"])
        except PatternError as exc:
            out.add([*at, "match", "path"], f"invalid path pattern: {exc}")
    if pattern is None:
        ok = False
    else:
        for m in methods:
            if not isinstance(m, str):
                continue
            key = (m, pattern.segments)
            if key in seen_match:
                out.add(
                    [*at, "match"],
                    f"{m} {pattern.text} is already matched by routes[{seen_match[key]}]",
                )
                ok = False
            seen_match.setdefault(key, i)
    # contract
    contract: Contract | None = None
    c = r.get("contract")
    if isinstance(c, Mapping):
        contract = _compile_contract(
            c, [*at, "contract"], out, base_dir, hasher, files, schema_cache
        )
        if contract is None:
            ok = False
    # webhook
    webhook: WebhookConfig | None = None
    w = r.get("webhook")
    if isinstance(w, Mapping):
        webhook = _compile_webhook(w, [*at, "webhook"], out)
        if webhook is None:
            ok = False
    # rules
    plan = _compile_rules(r.get("rules"), [*at, "rules"], out)
    if plan is False:
        ok = False
    if not ok or pattern is None or not isinstance(route_id, str):
        return None
    return CompiledRoute(
        id=route_id,
        methods=tuple(str(m) for m in methods),
        pattern=pattern,
        mode=_str(r, "mode", defaults.mode),
        limits=_limits(r.get("limits"), defaults.limits),
        vulnerability=_vulns(r.get("vulnerability"), defaults.vulnerability),
        contract=contract,
        webhook=webhook,
        cel=plan if plan is not None and plan is not False else None,
        locations=route_locations(r, i),
    )


def _compile_contract(
    c: Mapping[str, Any],
    at: list[Any],
    out: _Collector,
    base_dir: Path,
    hasher: Any,
    files: list[Path],
    schema_cache: dict[Path, tuple[Any, str | None]],
) -> Contract | None:
    ref = c.get("requestSchemaRef")
    inline = c.get("requestSchema")
    if ref is not None and inline is not None:
        out.add(at, "give either requestSchemaRef or requestSchema, not both")
        return None
    if ref is None and inline is None:
        out.add(at, "a contract needs requestSchemaRef or requestSchema")
        return None
    if isinstance(ref, str):
        where = [*at, "requestSchemaRef"]
        path = (base_dir / ref).resolve()
        if path not in schema_cache:
            schema, error, data = _read_schema(path)
            schema_cache[path] = (schema, error)
            if error is None:
                files.append(path)
                hasher.update(b"\0" + ref.encode() + b"\0" + data)
        schema, error = schema_cache[path]
        if error is not None:
            out.add(where, error)
            return None
        source = str(path)
    elif isinstance(inline, Mapping | bool):
        where = [*at, "requestSchema"]
        schema, source = inline, "<inline>"
    else:
        return None
    try:
        return compile_contract(
            schema, reject_unknown=bool(c.get("rejectUnknownFields", False)), source=source
        )
    except SchemaProblem as exc:
        out.add(where, f"{source}: {exc}" if source != "<inline>" else str(exc))
    except (RecursionError, ValueError, TypeError) as exc:
        out.add(where, f"schema cannot be compiled: {exc}")
    return None


def _read_schema(path: Path) -> tuple[Any, str | None, bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, f"schema file not found: {path}", b""
    except IsADirectoryError:
        return None, f"schema path is a directory: {path}", b""
    except OSError as exc:
        return None, f"schema file cannot be read: {path}: {exc.strerror or exc}", b""
    if len(data) > MAX_SCHEMA_BYTES:
        return None, f"schema file is larger than {MAX_SCHEMA_BYTES} bytes: {path}", b""
    schema, error = parse_schema_file(data, str(path))
    if error is not None:
        return None, f"schema file {path}: {error}", b""
    return schema, None, data


def _compile_webhook(w: Mapping[str, Any], at: list[Any], out: _Collector) -> WebhookConfig | None:
    provider = w.get("provider")
    secret = w.get("secret")
    ref = w.get("secretRef")
    if secret is not None and ref is not None:
        out.add(at, "give either secret or secretRef, not both")
        return None
    if secret is None and ref is None:
        out.add(at, "a webhook needs secretRef (the name of an environment variable) or secret")
        return None
    if isinstance(ref, str):
        value = os.environ.get(ref)
        if not value:
            if ref.isidentifier() and ref.isascii():  # else refused above, without its value
                out.add([*at, "secretRef"], f"environment variable {ref} is not set or empty")
            return None
        secret = value
    if not isinstance(secret, str) or not isinstance(provider, str):
        return None
    types = w.get("allowedEventTypes")
    return WebhookConfig(
        provider=provider,
        secret=secret.encode("utf-8"),
        tolerance=_int(w, "timestampTolerance", DEFAULT_TOLERANCE),
        replay_protection=w.get("replayProtection", True) is not False,
        allowed_event_types=frozenset(str(t) for t in types) if isinstance(types, list) else None,
        require_raw_body=w.get("requireRawBody", True) is not False,
    )


def _compile_rules(raw: Any, at: list[Any], out: _Collector) -> cel_mod.CelPlan | bool | None:
    if not isinstance(raw, list) or not raw:
        return None
    rules: list[cel_mod.CelRule] = []
    needs: dict[str, dict[str, set[str] | None]] = {}
    ok = True
    seen: dict[str, int] = {}
    for j, rule in enumerate(raw):
        if not isinstance(rule, Mapping):
            ok = False
            continue
        rid = rule.get("id")
        if isinstance(rid, str):
            if rid in seen:
                out.add([*at, j, "id"], f"duplicate rule id {rid!r} (also rules[{seen[rid]}])")
                ok = False
            elif rid.startswith(RESERVED_PREFIXES):
                out.add(
                    [*at, j, "id"],
                    f"rule ids must not start with a built-in prefix {RESERVED_PREFIXES}",
                )
                ok = False
            seen.setdefault(rid, j)
        expr = _obj(rule.get("config")).get("expr")
        if not isinstance(expr, str) or not isinstance(rid, str):
            ok = False
            continue
        try:
            program, used = cel_mod.compile_expr(expr)
        except cel_mod.CelProblem as exc:
            out.add([*at, j, "config", "expr"], str(exc))
            ok = False
            continue
        cel_mod.merge_needs(needs, used)
        rules.append(
            cel_mod.CelRule(
                id=rid,
                expr=expr,
                program=program,
                severity=_str(rule, "severity", "high"),
                blocking=rule.get("action", "block") == "block",
                message=rule.get("message") if isinstance(rule.get("message"), str) else None,
            )
        )
    if not ok:
        return False
    return cel_mod.make_plan(tuple(rules), needs)


def route_locations(r: Mapping[str, Any], i: int) -> dict[str, str]:
    """Where route ``i``'s parts are in the policy (``CompiledRoute.locations``, for explain)."""
    at = f"routes[{i}]"
    out = {"@route": at}
    for key in ("vulnerability", "limits", "contract", "webhook", "rules"):
        if key in r:
            out["@" + key] = f"{at}.{key}"
    rules = r.get("rules")
    for j, rule in enumerate(rules if isinstance(rules, list) else ()):
        if isinstance(rule, Mapping) and isinstance(rule.get("id"), str):
            out.setdefault(rule["id"], f"{at}.rules[{j}]")
    return out
