"""Compiling a checked policy document into an immutable ``CompiledPolicy``.

Every problem is collected (not only the first) with its path inside the policy. Schema files
are read relative to the policy file; secrets named by ``secretRef`` are read from the
environment here, at load, so a missing secret refuses the policy instead of failing requests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._exceptions import PolicyProblem
from ..engine import cel as cel_mod
from ..engine import checks
from ..engine.body import BodyOptions
from ..engine.contract import Contract, SchemaProblem, compile_bodies, compile_contract
from ..engine.limits import Limits
from ..engine.matcher import Pattern, PatternError, RouteMatcher, parse_pattern
from ..engine.metaschema import MetaschemaChecks
from ..engine.model import CompiledPolicy, CompiledRoute, Defaults, HitOverride
from ..engine.vulnerability import OFF, Check, VulnerabilityConfig
from ..engine.webhook import DEFAULT_TOLERANCE, WebhookConfig
from ..webhooks import find as find_provider
from ..webhooks import hit_ids as webhook_hit_ids
from . import _openapi
from . import _rule_types as rule_types
from ._loader import DOCUMENT_LIMIT_SETTING, MAX_DOCUMENT_BYTES, parse_schema_file, size_problem
from ._schema import format_path, structure_problems

# The hit ids the engine's own checks report: a CEL rule may not take one (an alert on
# ``limit.body.max`` must mean the limit). Rules that configure a check rename its hits.
BUILTIN_IDS = checks.CATALOGUE.builtin_ids() | webhook_hit_ids()
_SEALED = "a policy sent with the request cannot read the server's "
# The seam for ``engine.metaschema``: False checks every schema whole, as before (the tests
# load the same policies both ways and compare).
SHARE_METASCHEMA_CHECKS = True


class _Collector:
    def __init__(
        self, source: str, sealed: bool = False, max_document_bytes: int = MAX_DOCUMENT_BYTES
    ) -> None:
        self.source = source
        self.sealed = sealed  # a caller-supplied policy: no files, no environment
        self.max_document_bytes = max_document_bytes  # each OpenAPI document or schema file
        self.problems: list[PolicyProblem] = []
        self.openapi: _openapi.OpenApiLoader | None = None  # one per load: documents read once
        # one per load: each descriptor set read once (path -> set, or why it is refused)
        self.descriptor_sets: dict[Path, Any] = {}
        # one per load: a component every operation's bundle repeats is checked once
        self.metaschema = MetaschemaChecks() if SHARE_METASCHEMA_CHECKS else None

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
    return Limits(**{c.attr: _int(d, c.name, getattr(base, c.attr)) for c in checks.LIMIT_CHECKS})


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
    """``base`` with the settings ``raw`` gives (by the detectors' policy names)."""
    d = _obj(raw)
    return VulnerabilityConfig(
        *(
            _check(d[det.name], setting) if det.name in d else setting
            for det, setting in zip(base.detectors, base.checks, strict=True)
        ),
        detectors=base.detectors,
    )


def _body_options(d: Mapping[str, Any]) -> BodyOptions:
    """``defaults.body``: what the body phase does with what a lenient upstream reads."""
    return BodyOptions(
        malformed=_str(d, "malformed", "refuse"),
        duplicate_keys=_str(d, "duplicateKeys", "refuse"),
        content_encoding=_str(d, "contentEncoding", "decode"),
    )


def compile_document(
    doc: Any,
    *,
    source: str,
    base_dir: Path,
    policy_bytes: bytes,
    loaded_at: float | None = None,
    sealed: bool = False,
    max_document_bytes: int = MAX_DOCUMENT_BYTES,
) -> tuple[CompiledPolicy | None, list[PolicyProblem]]:
    """Compile a parsed policy document; return (policy, []) or (None, problems).

    ``sealed``: the policy came from a caller (``POST /evaluate``), so it may not read the
    server's files (schema refs) or environment (secrets): each would be an oracle on them.
    ``max_document_bytes``: the size limit of each file the policy references.
    """
    out = _Collector(source, sealed, max_document_bytes)
    out.problems.extend(structure_problems(doc, source))
    if not isinstance(doc, Mapping):
        if not out.problems:
            out.add("", "a policy must be a mapping")
        return None, out.problems
    hasher = hashlib.sha256(policy_bytes)
    files: list[Path] = []
    d = _obj(doc.get("defaults"))
    response = _obj(d.get("response"))
    defaults = Defaults(
        mode=_str(d, "mode", "enforce"),
        unmatched_route_action=_str(d, "unmatchedRouteAction", "allow"),
        block_status_code=_int(response, "blockStatusCode", 403),
        malformed_status_code=_int(response, "malformedStatusCode", 400),
        limits=_limits(d.get("limits"), Limits()),
        vulnerability=_vulns(d.get("vulnerabilityChecks"), VulnerabilityConfig()),
        body=_body_options(_obj(d.get("body"))),
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
    spec = doc.get("openapi")
    if isinstance(spec, Mapping) and isinstance(spec.get("spec"), str):
        n = len(raw_routes) if isinstance(raw_routes, list) else 0
        for route in _spec_routes(spec, n, defaults, out, base_dir, hasher, files, schema_cache,
                                  seen_ids, seen_match):  # fmt: skip
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
        warnings=tuple(out.openapi.warnings) if out.openapi is not None else (),
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
    grpc_method: Any = None
    path = match.get("path")
    if "grpc" in r:
        grpc_method, path = _compile_grpc(_obj(r["grpc"]), match, at, out, base_dir, hasher, files)
        if grpc_method is None:
            ok = False
    elif "match" not in r:
        out.add([*at, "match"], "required key is missing (a gRPC route may give grpc instead)")
    # gRPC calls are POSTs
    method = match.get("method", "POST" if "grpc" in r else "*")
    methods = tuple(method) if isinstance(method, list) else (method,)
    pattern: Pattern | None = None
    if isinstance(path, str):
        try:
            pattern = parse_pattern(path)
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
    parts = rule_types.split(r, at, out.add)
    ok = ok and parts.ok
    sections = parts.sections
    # contract
    contract: Contract | None = None
    if "contract" in sections:
        contract, fine = _compile_contract(
            sections["contract"], out, base_dir, hasher, files, schema_cache
        )
        ok = ok and fine
    # webhook
    webhook: WebhookConfig | None = None
    if "webhook" in sections:
        webhook = _compile_webhook(sections["webhook"], parts.replay_rule, out)
        if webhook is None:
            ok = False
    # rules
    plan = _compile_rules(parts.cel_rules, [*at, "rules"], out)
    if plan is False:
        ok = False
    overrides = _overrides(parts, webhook, out)
    if overrides is None:
        ok = False
    if not ok or pattern is None or not isinstance(route_id, str):
        return None
    limits = sections["limits"].values if "limits" in sections else None
    return CompiledRoute(
        id=route_id,
        methods=tuple(str(m) for m in methods),
        pattern=pattern,
        mode=_str(r, "mode", defaults.mode),
        limits=_limits(limits, defaults.limits),
        vulnerability=_vulns(r.get("vulnerability"), defaults.vulnerability),
        contract=contract,
        webhook=webhook,
        cel=plan if plan is not None and plan is not False else None,
        overrides=overrides or {},
        locations=route_locations(r, i),
        grpc=grpc_method,
    )


def _compile_grpc(
    g: Mapping[str, Any],
    match: Mapping[str, Any],
    at: list[Any],
    out: _Collector,
    base_dir: Path,
    hasher: Any,
    files: list[Path],
) -> tuple[Any, str | None]:
    """(the route's compiled gRPC method or None, the path it matches): the method named by
    ``grpc.service``/``grpc.method`` or by a ``/pkg.Service/Method`` path, looked up in the
    descriptor set ``grpc.descriptorSetRef`` (relative to the policy, like schema refs)."""
    from . import _grpc  # protobuf: loaded only by policies with gRPC routes

    where = [*at, "grpc"]
    path = match.get("path")
    service, name = g.get("service"), g.get("method")
    if isinstance(service, str) and isinstance(name, str):
        named = f"/{service}/{name}"
        if isinstance(path, str) and path != named:
            out.add([*at, "match", "path"], f"{path} is not the path of grpc method {named}")
            return None, None
        path = named
    elif service is not None or name is not None:
        out.add(where, "give both service and method, or neither (the path names the method)")
        return None, None
    if not isinstance(path, str) or _grpc.split_path(path) is None:
        out.add(
            where,
            "name the method: grpc.service and grpc.method, or match.path /pkg.Service/Method",
        )
        return None, None
    ref = g.get("descriptorSetRef")
    if not isinstance(ref, str):
        return None, None
    if out.sealed:
        out.add([*where, "descriptorSetRef"], _SEALED + "files")
        return None, None
    file = (base_dir / ref).resolve()
    if file not in out.descriptor_sets:
        try:
            loaded, data = _grpc.read_descriptor_set(file, out.max_document_bytes)
            out.descriptor_sets[file] = loaded
            files.append(file)
            hasher.update(b"\0" + ref.encode() + b"\0" + data)
        except _grpc.GrpcProblem as exc:
            out.descriptor_sets[file] = exc
    loaded = out.descriptor_sets[file]
    if isinstance(loaded, _grpc.GrpcProblem):
        out.add([*where, "descriptorSetRef"], str(loaded))
        return None, None
    try:
        method = _grpc.method_for(
            loaded,
            path,
            reject_unknown=g.get("rejectUnknownFields", True) is not False,
            first_message=g.get("streaming") == "firstMessage",
            protovalidate=g.get("protovalidate", True) is not False,
        )
    except _grpc.GrpcProblem as exc:
        out.add(where, str(exc))
        return None, None
    return method, path


def _overrides(
    parts: rule_types.RouteParts, webhook: WebhookConfig | None, out: _Collector
) -> dict[str, HitOverride] | None:
    """Built-in hit id -> the configuring rule's override; None when one is refused."""
    result: dict[str, HitOverride] = {}
    by: dict[str, list[Any]] = {}
    ok = True
    for target, override, where in parts.overrides:
        if target in (rule_types.VERIFY, rule_types.REPLAY):
            if webhook is None:
                continue  # reported by _compile_webhook (no provider)
            target = webhook.signature_id if target == rule_types.VERIFY else webhook.replay_id
        if target in by:
            out.add(where, f"{target} is already configured by {format_path(by[target])}")
            ok = False
            continue
        if override.id in BUILTIN_IDS and override.id != target:
            out.add(
                [*where, "id"],
                f"{override.id!r} is the id of another built-in check; this rule names "
                f"{target} hits",
            )
            ok = False
            continue
        by[target] = where
        if override != HitOverride(target):  # the same id, severity and action: no-op
            result[target] = override
    return result if ok else None


def _compile_contract(
    section: rule_types.Section,
    out: _Collector,
    base_dir: Path,
    hasher: Any,
    files: list[Path],
    schema_cache: dict[Path, tuple[Any, str | None]],
) -> tuple[Contract | None, bool]:
    """(contract or None, fine): a contract without a schema and without
    ``rejectUnknownFields: true`` checks nothing, as upstream (no contract, fine)."""
    c = section.values
    ref = c.get("requestSchemaRef")
    inline = c.get("requestSchema")
    operation: _openapi.Operation | None = None
    if isinstance(c.get("openapiRef"), str):
        operation = _load_operation(section, out, base_dir, hasher, files)
        if operation is None:
            return None, False
        if ref is None and inline is None:  # else: body from the policy, the rest from the spec
            inline = True if operation.body_schema is None else operation.body_schema
    if ref is not None and inline is not None:
        out.add(section.where(), "give either requestSchemaRef or requestSchema, not both")
        return None, False
    if ref is None and inline is None:
        if c.get("rejectUnknownFields") is True:
            out.add(
                section.where("rejectUnknownFields"),
                "rejectUnknownFields needs a schema to know which fields are declared: add "
                "requestSchemaRef or requestSchema, or set it to false",
            )
            return None, False
        return None, True
    if isinstance(ref, str) and out.sealed:
        out.add(section.where("requestSchemaRef"), _SEALED + "files (use requestSchema)")
        return None, False
    if isinstance(ref, str):
        where = section.where("requestSchemaRef")
        path = (base_dir / ref).resolve()
        if path not in schema_cache:
            schema, error, data = _read_schema(path, out.max_document_bytes)
            schema_cache[path] = (schema, error)
            if error is None:
                files.append(path)
                hasher.update(b"\0" + ref.encode() + b"\0" + data)
        schema, error = schema_cache[path]
        if error is not None:
            out.add(where, error)
            return None, False
        source = str(path)
    elif operation is not None and "requestSchema" not in c:
        where = section.where("openapiRef")
        schema, source = inline, operation.where
    elif isinstance(inline, Mapping | bool):
        where = section.where("requestSchema")
        schema, source = inline, "<inline>"
    else:
        return None, False
    from_operation = operation is not None and ref is None and "requestSchema" not in c
    try:
        try:
            contract = compile_contract(
                schema,
                reject_unknown=bool(c.get("rejectUnknownFields", False)),
                source=source,
                metaschema=out.metaschema,
            )
        except SchemaProblem:
            if not from_operation or operation is None or operation.bodies is None:
                raise
            # a description's body schema we cannot run (a pattern RE2 refuses): each media
            # type's check says so below, and the rest of the operation is still checked
            contract = compile_contract(True, reject_unknown=False, source=source)
            schema = None
        if operation is not None:
            bodies = None
            if operation.bodies is not None and from_operation:
                assert out.openapi is not None
                bodies = compile_bodies(
                    operation.bodies,
                    reject_unknown=bool(c.get("rejectUnknownFields", False)),
                    source=source,
                    first=contract,
                    first_schema=schema,
                    metaschema=out.metaschema,
                    warn=out.openapi.warn,
                )
            contract = dataclasses.replace(
                contract,
                parameters=operation.parameters,
                body_optional=not operation.body_required,
                bodies=bodies,
            )
        return contract, True
    except SchemaProblem as exc:
        out.add(where, f"{source}: {exc}" if source != "<inline>" else str(exc))
    except (RecursionError, ValueError, TypeError) as exc:
        out.add(where, f"schema cannot be compiled: {exc}")
    return None, False


def _spec_routes(
    spec: Mapping[str, Any], first: int, defaults: Defaults, out: _Collector, *args: Any
) -> list[CompiledRoute]:
    """The routes of ``openapi: {spec: ...}``, compiled like the policy's own; a problem is
    named ``openapi[METHOD /path].<key>``."""
    base_dir, hasher, files = args[0], args[1], args[2]
    if out.sealed:
        out.add("openapi.spec", _SEALED + "files")
        return []
    if out.openapi is None:
        out.openapi = _openapi.OpenApiLoader(base_dir, out.max_document_bytes)
    try:
        made = _openapi.spec_routes(spec, out.openapi)
    except _openapi.OpenApiProblem as exc:
        out.add("openapi.spec", str(exc))
        made = []
    for path, data in out.openapi.files.items():
        if path not in files:
            files.append(path)
            hasher.update(b"\0" + str(path).encode() + b"\0" + data)
    compiled: list[CompiledRoute] = []
    started = time.perf_counter()
    if out.openapi.large:
        _openapi.progress.info("compiling %d routes from %s", len(made), spec["spec"])
    for k, (label, route_doc) in enumerate(made):
        i = first + k
        at = f"routes[{i}]"
        mark = len(out.problems)
        for p in structure_problems({"policyVersion": "0.1", "routes": [route_doc]}, ""):
            out.add(p.path.replace("routes[0]", at, 1), p.reason)
        route = None
        if len(out.problems) == mark:
            route = _compile_route(route_doc, i, defaults, out, *args)
        for j in range(mark, len(out.problems)):
            p = out.problems[j]
            if p.path.startswith(at):
                out.problems[j] = PolicyProblem(p.file, label + p.path[len(at) :], p.reason)
        if route is not None:
            compiled.append(route)
    if out.openapi.large:
        _openapi.progress.info(
            "compiled %d routes in %.2f s", len(compiled), time.perf_counter() - started
        )
    return compiled


def _load_operation(
    section: rule_types.Section, out: _Collector, base_dir: Path, hasher: Any, files: list[Path]
) -> _openapi.Operation | None:
    """The OpenAPI operation (or schema) ``openapiRef`` names; its files join ``files``."""
    c = section.values
    if out.sealed:
        out.add(section.where("openapiRef"), _SEALED + "files (use requestSchema)")
        return None
    if out.openapi is None:
        out.openapi = _openapi.OpenApiLoader(base_dir, out.max_document_bytes)
    try:
        operation = out.openapi.operation(
            c["openapiRef"], reject_unknown_parameters=c.get("rejectUnknownParameters") is True
        )
    except _openapi.OpenApiProblem as exc:
        out.add(section.where("openapiRef"), str(exc))
        operation = None
    for path, data in out.openapi.files.items():  # read so far, also when refused (watched)
        if path not in files:
            files.append(path)
            hasher.update(b"\0" + str(path).encode() + b"\0" + data)
    return operation


def _read_schema(path: Path, max_bytes: int) -> tuple[Any, str | None, bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, f"schema file not found: {path}", b""
    except IsADirectoryError:
        return None, f"schema path is a directory: {path}", b""
    except OSError as exc:
        return None, f"schema file cannot be read: {path}: {exc.strerror or exc}", b""
    if len(data) > max_bytes:
        size = size_problem(len(data), max_bytes, DOCUMENT_LIMIT_SETTING)
        return None, f"schema file {path}: {size}", b""
    schema, error = parse_schema_file(data, str(path), max_bytes=max_bytes)
    if error is not None:
        return None, f"schema file {path}: {error}", b""
    return schema, None, data


def _compile_webhook(
    section: rule_types.Section, replay_rule: list[Any] | None, out: _Collector
) -> WebhookConfig | None:
    w = section.values
    provider = w.get("provider")
    secret = w.get("secret")
    ref = w.get("secretRef")
    ok = True
    if not isinstance(provider, str):
        out.add(
            section.where(),
            "a webhook needs a provider (the route's webhook.provider, or config.provider of "
            "a webhook rule)",
        )
        return None
    scheme = find_provider(provider)
    if scheme is None:
        return None  # the structural check reported it (the schema's enum)
    if secret is not None and ref is not None:
        out.add(section.where(), "give either secret or secretRef, not both")
        return None
    if "toleranceSeconds" in w and "timestampTolerance" in w:
        out.add(
            section.where("toleranceSeconds"),
            "toleranceSeconds is the deprecated name of timestampTolerance; give only "
            "timestampTolerance",
        )
        ok = False
    header = w.get("header")
    expected = scheme.signature_header
    if isinstance(header, str) and header.lower() != expected:
        out.add(
            section.where("header"),
            f"{provider} signatures are read from {expected!r}; another header is not supported",
        )
        ok = False
    replay = w.get("replayProtection", True) is not False
    if not replay and "idempotency" in w:
        out.add(section.where("idempotency"), "idempotency asks for replay protection, "
                "which replayProtection: false turns off; remove one of them")  # fmt: skip
        ok = False
    if not replay and replay_rule is not None:
        out.add(replay_rule, "a webhook-replay rule needs replay protection, which "
                "replayProtection: false turns off; remove one of them")  # fmt: skip
        ok = False
    if secret is None and out.sealed:
        out.add(section.where(), _SEALED + "environment variables (give secret)")
        return None
    if isinstance(ref, str):
        value = os.environ.get(ref)
        if not value:
            if ref.isidentifier() and ref.isascii():  # else refused above, without its value
                out.add(
                    section.where("secretRef"), f"environment variable {ref} is not set or empty"
                )
            return None
        secret = value
    elif secret is None:
        # the provider's usual variable (upstream's getSecret hook reads the same ones)
        env = scheme.secret_env
        secret = os.environ.get(env)
        if not secret:
            out.add(
                section.where("provider"),
                f"no {provider} webhook secret: set the environment variable {env} (the "
                f"{provider} default), or give secretRef (a variable's name) or secret",
            )
            return None
    if not isinstance(secret, str) or not ok:
        return None
    types = w.get("allowedEventTypes")
    tolerance = _int(w, "timestampTolerance", _int(w, "toleranceSeconds", DEFAULT_TOLERANCE))
    return WebhookConfig(
        scheme=scheme,
        secret=secret.encode("utf-8"),
        tolerance=tolerance,
        replay_protection=replay,
        allowed_event_types=frozenset(str(t) for t in types) if isinstance(types, list) else None,
        require_raw_body=w.get("requireRawBody", True) is not False,
    )


def _compile_rules(
    raw: list[tuple[int, Mapping[str, Any]]], at: list[Any], out: _Collector
) -> cel_mod.CelPlan | bool | None:
    """The route's CEL rules (``(index, rule)``) as a plan, None without any, False if refused."""
    if not raw:
        return None
    rules: list[cel_mod.CelRule] = []
    needs: dict[str, dict[str, set[str] | None]] = {}
    ok = True
    for j, rule in raw:
        rid = rule.get("id")
        if isinstance(rid, str) and rid in BUILTIN_IDS:
            out.add(
                [*at, j, "id"],
                f"{rid!r} is the id of a built-in check; a CEL rule needs an id of its own",
            )
            ok = False
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
    for key in ("vulnerability", "limits", "contract", "webhook", "grpc", "rules"):
        if key in r:
            out["@" + key] = f"{at}.{key}"
    if "grpc" in r:  # a gRPC route's contract is its method's message type
        out.setdefault("@contract", f"{at}.grpc")
    rules = r.get("rules")
    for j, rule in enumerate(rules if isinstance(rules, list) else ()):
        if isinstance(rule, Mapping) and isinstance(rule.get("id"), str):
            out.setdefault(rule["id"], f"{at}.rules[{j}]")
    return out
