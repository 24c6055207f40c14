"""CEL rules: compiled once at load, evaluated against variables built once per request.

A rule's ``expr`` is a condition that must hold: false, a non-boolean result or an error
(a missing key, a type mismatch) is a hit. Building a ``cel.Context`` costs time in
proportion to what goes into it, so at load we read which variables *and which of their
fields* the route's expressions reference, and per request we convert only those.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cel

from ..context import RequestContext
from ..decision import RuleHit

VARIABLES: dict[str, tuple[str, ...]] = {
    "request": ("method", "path", "headers", "query", "params", "body", "contentType"),
    "identity": ("authenticated", "subject", "tenant", "scopes", "claims"),
    "client": ("ip", "userAgent"),
    "runtime": ("service", "env"),
}
_STRINGS = re.compile(
    r"""[rRbB]{0,2}(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")""", re.S
)
_REF = re.compile(r"(?<![\w.])(request|identity|client|runtime)\b(?:\s*\.\s*([A-Za-z_]\w*))?")
_MACRO_VAR = re.compile(
    r"\.\s*(?:all|exists|exists_one|existsOne|map|filter|sortBy|transformList|transformMap)\s*\(\s*([A-Za-z_]\w*)\s*,"
)
_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")


class CelProblem(ValueError):
    """A CEL expression that cannot be used (syntax, unknown variable or field)."""


@dataclass(frozen=True, slots=True)
class CelRule:
    id: str
    expr: str
    program: Any  # cel.Program
    severity: str = "high"
    blocking: bool = True  # action "block"; "monitor" rules only report
    message: str | None = None


MAP_FIELDS = frozenset({("request", "body"), ("request", "headers"), ("request", "query"),
                        ("request", "params"), ("identity", "claims")})  # fmt: skip
_KEY = re.compile(
    r"""\s*(?:\.\s*([A-Za-z_]\w*)(?!\w|\s*\()|\[\s*(?:'([^'\\\n]*)'|"([^"\\\n]*)")\s*\])"""
)

# What an expression reads: (variable, field, flat) -> None (all of it) or the keys it reads
# from a map field. ``flat`` fields are passed as one top-level CEL variable each (see
# ``flat_name``): converting a nested dict costs about as much as its leaves, so
# ``identity.tenant`` is rewritten to ``cs__identity__tenant`` and only that string is converted.
Need = tuple[str, str, bool]
Needs = dict[Need, frozenset[str] | None]
_HAS_OPEN = re.compile(r"has\s*\(\s*$")
_CLOSE = re.compile(r"\s*\)")


def flat_name(var: str, fld: str) -> str:
    return f"cs__{var}__{fld}"


def compile_expr(expr: str) -> tuple[Any, Needs]:
    """Compile ``expr``; return the program and what it reads (see ``Needs``)."""
    program = _compile(expr)
    strings = [m.span() for m in _STRINGS.finditer(expr)]

    def in_string(pos: int) -> bool:
        return any(a <= pos < b for a, b in strings)

    code = _STRINGS.sub("''", expr)
    bound = set(_MACRO_VAR.findall(code))
    unknown = sorted(set(program.variables()) - set(VARIABLES) - bound)
    if unknown:
        raise CelProblem(
            f"unknown variable {unknown[0]!r} (variables: request, identity, client, runtime)"
        )
    needs: dict[Need, set[str] | None] = {}
    nested_only: dict[Need, set[str] | None] = {}
    pieces: list[str] = []
    pos = 0
    for m in _REF.finditer(expr):
        var, fld = m.group(1), m.group(2)
        if var in bound or in_string(m.start()):
            continue
        if not fld:
            for f in VARIABLES[var]:
                needs[(var, f, False)] = None
                nested_only[(var, f, False)] = None
            continue
        if fld not in VARIABLES[var]:
            raise CelProblem(f"{var} has no field {fld!r} (fields: {', '.join(VARIABLES[var])})")
        keys: set[str] | None = None
        if (var, fld) in MAP_FIELDS:
            key = _KEY.match(expr, m.end())
            if key is not None:
                keys = {key.group(1) or key.group(2) or key.group(3) or ""}
        # ``has(identity.tenant)`` needs a field selection: that occurrence stays nested.
        flat = not (_HAS_OPEN.search(expr, 0, m.start()) and _CLOSE.match(expr, m.end()))
        for target, is_flat in ((needs, flat), (nested_only, False)):
            need = (var, fld, is_flat)
            if need in target and (target[need] is None or keys is None):
                target[need] = None
            else:
                target[need] = (target.get(need) or set()) | keys if keys is not None else None
        if flat:
            pieces.append(expr[pos : m.start()])
            pieces.append(flat_name(var, fld))
            pos = m.end()
    pieces.append(expr[pos:])
    rewritten = "".join(pieces)
    if rewritten != expr:
        try:
            program = _compile(rewritten)
        except CelProblem:  # a construct the rewrite does not understand: stay nested
            needs = nested_only
    return program, {k: (frozenset(v) if v is not None else None) for k, v in needs.items()}


# The CEL parser recurses per operator: ~20,000 chained operators overflow its native stack
# and kill the process (SIGSEGV, not an exception), which a hot reload must never do. Rules
# are short conditions; 4,096 characters is far above any real one and far below the crash.
MAX_EXPR_CHARS = 4096


def _compile(expr: str) -> Any:
    if len(expr) > MAX_EXPR_CHARS:
        raise CelProblem(
            f"CEL expression is {len(expr)} characters long; the limit is {MAX_EXPR_CHARS}"
        )
    try:
        return cel.compile(expr)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise CelProblem(_syntax_reason(str(exc))) from None
    except BaseException as exc:  # pyo3 panics derive from BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise CelProblem(f"CEL expression cannot be compiled: {exc}") from None


def merge_needs(into: dict[Need, set[str] | None], needs: Needs) -> None:
    for need, keys in needs.items():
        if keys is None or (need in into and into[need] is None):
            into[need] = None
        else:
            into[need] = (into.get(need) or set()) | keys


def _syntax_reason(text: str) -> str:
    m = _POSITION.search(text)
    if m is None:
        return f"invalid CEL expression: {text.splitlines()[0] if text else 'unknown error'}"
    return f"invalid CEL expression at line {m.group(1)}, column {m.group(2)}: {m.group(3)}"


@dataclass(slots=True)
class RequestView:
    """What CEL variables are built from, beyond the context itself.

    Not frozen: one is built per request on the hot path and never shared, and a frozen
    dataclass pays an ``object.__setattr__`` call per field.
    """

    ctx: RequestContext
    path: str
    params: Mapping[str, str]
    body: Any


_Getter = Callable[[RequestView], Any]
_GETTERS: dict[str, dict[str, _Getter]] = {
    "request": {
        "method": lambda v: v.ctx.request.method,
        "path": lambda v: v.path,
        "headers": lambda v: dict(v.ctx.request.headers),
        "query": lambda v: dict(v.ctx.request.query),
        "params": lambda v: dict(v.params),
        "body": lambda v: v.body,
        "contentType": lambda v: v.ctx.request.content_type,
    },
    "identity": {
        "authenticated": lambda v: v.ctx.identity.authenticated,
        "subject": lambda v: v.ctx.identity.subject,
        "tenant": lambda v: v.ctx.identity.tenant,
        "scopes": lambda v: list(v.ctx.identity.scopes),
        "claims": lambda v: dict(v.ctx.identity.claims),
    },
    "client": {
        "ip": lambda v: v.ctx.client.ip,
        "userAgent": lambda v: v.ctx.client.user_agent,
    },
    "runtime": {
        "service": lambda v: v.ctx.runtime.service,
        "env": lambda v: v.ctx.runtime.env,
    },
}


@dataclass(frozen=True, slots=True)
class CelPlan:
    """The rules of one route and how to build the variables they read."""

    rules: tuple[CelRule, ...]
    flat: tuple[tuple[str, _Getter], ...]  # top-level CEL name -> getter
    nested: tuple[tuple[str, tuple[tuple[str, _Getter], ...]], ...]  # var -> fields


def _pruned(get: _Getter, keys: frozenset[str]) -> _Getter:
    """A getter that converts only the keys an expression reads from a map."""

    def getter(view: RequestView) -> Any:
        value = get(view)
        if isinstance(value, Mapping):
            return {k: value[k] for k in keys if k in value}
        return value

    return getter


def make_plan(rules: tuple[CelRule, ...], needs: Mapping[Need, Any]) -> CelPlan:
    def getter(var: str, fld: str, keys: Any) -> _Getter:
        get = _GETTERS[var][fld]
        return get if keys is None else _pruned(get, frozenset(keys))

    flat = tuple(
        (flat_name(var, fld), getter(var, fld, keys))
        for (var, fld, is_flat), keys in sorted(needs.items())
        if is_flat
    )
    nested = []
    for var, fields in VARIABLES.items():
        chosen = tuple(
            (fld, getter(var, fld, needs[(var, fld, False)]))
            for fld in fields
            if (var, fld, False) in needs
        )
        if chosen:
            nested.append((var, chosen))
    return CelPlan(rules, flat, tuple(nested))


def evaluate(plan: CelPlan, view: RequestView, hits: list[RuleHit]) -> None:
    try:
        variables = {name: get(view) for name, get in plan.flat}
        for var, fields in plan.nested:
            variables[var] = {f: get(view) for f, get in fields}
        context = cel.Context(variables=variables)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        reason = f"request data cannot be converted for CEL: {str(exc)[:120]}"
        for rule in plan.rules:
            hits.append(RuleHit(rule.id, rule.severity, rule.message or reason))
        return
    for rule in plan.rules:
        try:
            result = rule.program.execute(context)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            hits.append(
                RuleHit(
                    rule.id,
                    rule.severity,
                    rule.message or f"{rule.expr} could not be evaluated: {str(exc)[:120]}",
                )
            )
            continue
        if result is not True:
            why = "is false" if result is False else "did not evaluate to a boolean"
            hits.append(RuleHit(rule.id, rule.severity, rule.message or f"{rule.expr} {why}"))
