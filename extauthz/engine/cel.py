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


def compile_expr(expr: str) -> tuple[Any, dict[str, frozenset[str]]]:
    """Compile ``expr``; return the program and the fields it reads per variable."""
    try:
        program = cel.compile(expr)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise CelProblem(_syntax_reason(str(exc))) from None
    except BaseException as exc:  # pyo3 panics derive from BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise CelProblem(f"CEL expression cannot be compiled: {exc}") from None
    code = _STRINGS.sub("''", expr)
    bound = set(_MACRO_VAR.findall(code))
    unknown = sorted(set(program.variables()) - set(VARIABLES) - bound)
    if unknown:
        raise CelProblem(
            f"unknown variable {unknown[0]!r} (variables: request, identity, client, runtime)"
        )
    needs: dict[str, set[str]] = {}
    for var, fld in _REF.findall(code):
        if var in bound:
            continue
        fields = needs.setdefault(var, set())
        if not fld:
            fields.update(VARIABLES[var])
        elif fld not in VARIABLES[var]:
            raise CelProblem(f"{var} has no field {fld!r} (fields: {', '.join(VARIABLES[var])})")
        else:
            fields.add(fld)
    return program, {k: frozenset(v) for k, v in needs.items()}


def _syntax_reason(text: str) -> str:
    m = _POSITION.search(text)
    if m is None:
        return f"invalid CEL expression: {text.splitlines()[0] if text else 'unknown error'}"
    return f"invalid CEL expression at line {m.group(1)}, column {m.group(2)}: {m.group(3)}"


@dataclass(frozen=True, slots=True)
class RequestView:
    """What CEL variables are built from, beyond the context itself."""

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
    """The rules of one route and the variable fields they need."""

    rules: tuple[CelRule, ...]
    getters: tuple[tuple[str, tuple[tuple[str, _Getter], ...]], ...]


def make_plan(rules: tuple[CelRule, ...], needs: dict[str, frozenset[str]]) -> CelPlan:
    getters = tuple(
        (var, tuple((f, _GETTERS[var][f]) for f in VARIABLES[var] if f in needs[var]))
        for var in VARIABLES
        if var in needs
    )
    return CelPlan(rules, getters)


def evaluate(plan: CelPlan, view: RequestView, hits: list[RuleHit]) -> None:
    try:
        variables = {var: {f: get(view) for f, get in fields} for var, fields in plan.getters}
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
