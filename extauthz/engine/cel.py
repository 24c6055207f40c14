"""CEL rules: compiled once at load, evaluated against variables built once per request.

A rule's ``expr`` is a condition that must hold: false, a non-boolean result or an error
(a missing key, a type mismatch) is a hit. Building a ``cel.Context`` costs time in
proportion to what goes into it, so at load we read which variables *and which of their
fields* the route's expressions reference, and per request we convert only those. Where
every read of a map field is a constant key (``request.body.tenantId``), a route also has a
``FastPath`` that passes each such value as a variable of its own, used when all those keys
are present (see ``FastPath``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# The extension module itself, not the ``cel`` package: xds-protos ships an empty
# ``cel/__init__.py`` (its cel-spec protos) that replaces common-expression-language's
# (``from .cel import *``) whenever it is installed after it.
from cel import cel

from ..context import RequestContext
from ..decision import RuleHit
from .cel_env import INTERNAL_REQUEST_FIELDS, USER_VARIABLES, CelEnvProblem, translate
from .cel_native import FALLBACK, Native, compile_native, simple_variables
from .checks.pipeline_hits import REQUEST_MALFORMED

# The engine's variables: the policy-visible ones (``cel_env.USER_VARIABLES``) with
# ``request.body`` as the parsed value and the body envelope's parts as fields of their own.
VARIABLES: dict[str, tuple[str, ...]] = {
    **USER_VARIABLES,
    "request": (*USER_VARIABLES["request"], *INTERNAL_REQUEST_FIELDS),
    "webhook": ("provider", "signatureValid"),
}
_NAMES = ", ".join(USER_VARIABLES)
_STRINGS = re.compile(
    r"""[rRbB]{0,2}(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")""", re.S
)
_REF = re.compile(
    r"(?<![\w.])(request|identity|client|runtime|webhook)\b(?:\s*\.\s*([A-Za-z_]\w*))?"
)
_MACRO_VAR = re.compile(
    r"\.\s*(?:all|exists|exists_one|existsOne|map|filter|sortBy|transformList|transformMap)\s*\(\s*([A-Za-z_]\w*)\s*,"
)
_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")

#: The seam for ``cel_native``: False runs every rule with the ``cel`` library (the tests
#: compare both ways).
NATIVE = True


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


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]*")


def leaf_name(var: str, fld: str, key: str) -> str:
    """The top-level CEL name for ``var.fld[key]``: one per key, whatever characters it holds."""
    if _PLAIN_KEY.fullmatch(key):
        return f"cs__{var}__{fld}__k__{key}"
    return f"cs__{var}__{fld}__x__{key.encode().hex()}"  # distinct prefix: never collides


@dataclass(frozen=True, slots=True)
class _Ref:
    """One read of a variable in an expression (outside strings and macro-bound names)."""

    var: str
    fld: str | None
    start: int
    end: int  # end of ``var.fld`` (of ``var`` when there is no field)
    key: str | None  # the constant key read right after a map field, if any
    key_end: int  # end of ``var.fld.key`` / ``var.fld['key']`` (``end`` when no key)
    flat: bool  # ``var.fld`` may become a top-level variable (it is not ``has(var.fld)``)
    leaf: bool  # ``var.fld.key`` may become one too (it is not ``has(var.fld.key)``)


def _in_has(expr: str, start: int, end: int) -> bool:
    return bool(_HAS_OPEN.search(expr, 0, start) and _CLOSE.match(expr, end))


def _analyse(
    expr: str, fields: Mapping[str, tuple[str, ...]] = VARIABLES
) -> tuple[Any, list[_Ref], set[str]]:
    """Compile ``expr`` and find what it reads; raise ``CelProblem`` for unknown names."""
    program = _compile(expr)
    strings = [m.span() for m in _STRINGS.finditer(expr)]

    def in_string(pos: int) -> bool:
        return any(a <= pos < b for a, b in strings)

    code = _STRINGS.sub("''", expr)
    bound = set(_MACRO_VAR.findall(code))
    unknown = sorted(set(program.variables()) - set(VARIABLES) - bound)
    if unknown:
        raise CelProblem(f"unknown variable {unknown[0]!r} (variables: {_NAMES})")
    refs: list[_Ref] = []
    for m in _REF.finditer(expr):
        var, fld = m.group(1), m.group(2)
        if var in bound or in_string(m.start()):
            continue
        if expr[: m.start()].rstrip().endswith("."):  # ``x. request``: a field name, not ours
            continue
        if not fld:
            refs.append(_Ref(var, None, m.start(), m.end(), None, m.end(), False, False))
            continue
        if fld not in fields[var]:
            raise CelProblem(f"{var} has no field {fld!r} (fields: {', '.join(fields[var])})")
        if (var, fld) == ("webhook", "replayed"):
            raise CelProblem(
                "webhook.replayed is not known while CEL rules run (the replay claim comes "
                "after them); configure replay protection with a webhook-replay rule"
            )
        key: str | None = None
        key_end = m.end()
        if (var, fld) in MAP_FIELDS:
            k = _KEY.match(expr, m.end())
            if k is not None:
                key = k.group(1) or k.group(2) or k.group(3) or ""
                key_end = k.end()
        # ``has(identity.tenant)`` needs a field selection: that occurrence stays nested.
        flat = not _in_has(expr, m.start(), m.end())
        leaf = key is not None and not _in_has(expr, m.start(), key_end)
        refs.append(_Ref(var, fld, m.start(), m.end(), key, key_end, flat, leaf))
    return program, refs, bound


def _add(target: dict[Need, set[str] | None], need: Need, key: str | None) -> None:
    if need in target and (target[need] is None or key is None):
        target[need] = None
    else:
        target[need] = (target.get(need) or set()) | {key} if key is not None else None


def _rewrite(
    expr: str, refs: list[_Ref], leaf_fields: frozenset[tuple[str, str]]
) -> tuple[
    str, dict[Need, set[str] | None], dict[Need, set[str] | None], set[tuple[str, str, str]]
]:
    """Rewrite reads to top-level names: (text, needs, needs if nested, leaves read)."""
    needs: dict[Need, set[str] | None] = {}
    nested_only: dict[Need, set[str] | None] = {}
    leaves: set[tuple[str, str, str]] = set()
    pieces: list[str] = []
    pos = 0
    for ref in refs:
        var, fld = ref.var, ref.fld
        if fld is None:
            for f in VARIABLES[var]:
                needs[(var, f, False)] = None
                nested_only[(var, f, False)] = None
            continue
        if (var, fld) in leaf_fields and ref.leaf and ref.key is not None:
            leaves.add((var, fld, ref.key))
            pieces.append(expr[pos : ref.start])
            pieces.append(leaf_name(var, fld, ref.key))
            pos = ref.key_end
            continue
        _add(needs, (var, fld, ref.flat), ref.key)
        _add(nested_only, (var, fld, False), ref.key)
        if ref.flat:
            pieces.append(expr[pos : ref.start])
            pieces.append(flat_name(var, fld))
            pos = ref.end
    pieces.append(expr[pos:])
    return "".join(pieces), needs, nested_only, leaves


def internal_code(expr: str) -> str:
    """``expr`` checked against the policy-visible environment and translated to the engine's.

    Raises ``CelProblem`` (syntax, unknown names, reads without a meaning).
    """
    _analyse(expr, USER_VARIABLES)
    try:
        return translate(expr)
    except CelEnvProblem as exc:
        raise CelProblem(str(exc)) from None


def compile_expr(expr: str) -> tuple[Any, Needs]:
    """Compile ``expr``; return the program and what it reads (see ``Needs``).

    ``expr`` is written against upstream's environment (``cel_env``); the program runs the
    translated code.
    """
    expr = internal_code(expr)
    program, refs, bound = _analyse(expr)
    rewritten, needs, nested_only, _ = _rewrite(expr, refs, frozenset())
    if rewritten != expr:
        if any(b.startswith("cs__") for b in bound):  # a macro variable would shadow ours
            needs = nested_only
        else:
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
    body: Any  # the parsed JSON or form value (``request.body.json.sample``), or None
    route_id: str = ""
    webhook_provider: str = ""  # the route's webhook provider, "" without one
    signature_valid: bool = False  # the engine's own verification, never the caller's hint


def _json(v: RequestView) -> dict[str, Any]:
    return {"sample": v.body, "redacted": v.ctx.request.body.redacted}


def _envelope(v: RequestView) -> dict[str, Any]:
    body = v.ctx.request.body
    return {"present": body.present, "sizeBytes": body.size_bytes, "json": _json(v)}


_Getter = Callable[[RequestView], Any]
# Missing identity, client and runtime fields read as "" / false / [] / {}, as upstream
# documents: ``identity.tenant != ""`` is false for a caller without a tenant.
_GETTERS: dict[str, dict[str, _Getter]] = {
    "request": {
        "method": lambda v: v.ctx.request.method,
        "path": lambda v: v.path,
        "routeId": lambda v: v.route_id,
        "headers": lambda v: dict(v.ctx.request.headers),
        "query": lambda v: dict(v.ctx.request.query),
        "params": lambda v: dict(v.params),
        "body": lambda v: v.body,
        "contentType": lambda v: v.ctx.request.content_type or "",
        "bodyPresent": lambda v: v.ctx.request.body.present,
        "bodySize": lambda v: v.ctx.request.body.size_bytes,
        "bodyRedacted": lambda v: v.ctx.request.body.redacted,
        "bodyJson": _json,
        "bodyEnvelope": _envelope,
    },
    "identity": {
        "authenticated": lambda v: v.ctx.identity.authenticated,
        "subject": lambda v: v.ctx.identity.subject or "",
        "tenant": lambda v: v.ctx.identity.tenant or "",
        "scopes": lambda v: list(v.ctx.identity.scopes),
        "claims": lambda v: dict(v.ctx.identity.claims),
    },
    "client": {
        "ip": lambda v: v.ctx.client.ip or "",
        "userAgent": lambda v: v.ctx.client.user_agent or "",
    },
    "runtime": {
        "language": lambda v: v.ctx.runtime.language or "",
        "service": lambda v: v.ctx.runtime.service or "",
        "env": lambda v: v.ctx.runtime.env or "",
    },
    "webhook": {
        "provider": lambda v: v.webhook_provider,
        "signatureValid": lambda v: v.signature_valid,
    },
}


def _as_dict(value: Any) -> dict[Any, Any]:
    return value if type(value) is dict else dict(value)


# The maps that constant-key reads come from, as the nested getters see them: ``request.body``
# as parsed (any JSON value), the others copied to a dict as ``_GETTERS`` does (a plain dict
# is used as is: the same keys and values without the copy).
_MAPS: dict[tuple[str, str], _Getter] = {
    ("request", "body"): lambda v: v.body,
    ("request", "headers"): lambda v: _as_dict(v.ctx.request.headers),
    ("request", "query"): lambda v: _as_dict(v.ctx.request.query),
    ("request", "params"): lambda v: _as_dict(v.params),
    ("identity", "claims"): lambda v: _as_dict(v.ctx.identity.claims),
}


@dataclass(frozen=True, slots=True)
class FastPath:
    """The route's rules with constant-key map reads as top-level variables of their own.

    ``request.body.tenantId`` reads ``cs__request__body__k__tenantId`` (only that string is
    converted, ~1.3 us) instead of a pruned ``{tenantId: ...}`` map (~3.1 us). It is taken
    only when every such map is a mapping holding every key read: then each leaf variable
    holds exactly what the map lookup returned, and the programs evaluate the same. Otherwise
    (a key missing, a body that is a list or null, a value CEL cannot convert) the route's
    plain programs run, so errors and their messages stay as they were.
    """

    pairs: tuple[tuple[CelRule, Any], ...]  # each rule with its rewritten program
    leaves: tuple[tuple[_Getter, tuple[tuple[str, str], ...]], ...]  # map -> (name, key)
    flat: tuple[tuple[str, _Getter], ...]
    nested: tuple[tuple[str, tuple[tuple[str, _Getter], ...]], ...]
    native: tuple[Native, ...] | None = None  # every program in ``cel_native``'s subset


@dataclass(frozen=True, slots=True)
class CelPlan:
    """The rules of one route and how to build the variables they read."""

    rules: tuple[CelRule, ...]
    flat: tuple[tuple[str, _Getter], ...]  # top-level CEL name -> getter
    nested: tuple[tuple[str, tuple[tuple[str, _Getter], ...]], ...]  # var -> fields
    pairs: tuple[tuple[CelRule, Any], ...]  # each rule with its program, in rule order
    fast: FastPath | None = None
    native: tuple[Native, ...] | None = None  # every program in ``cel_native``'s subset


def _pruned(get: _Getter, keys: frozenset[str]) -> _Getter:
    """A getter that converts only the keys an expression reads from a map."""

    def getter(view: RequestView) -> Any:
        value = get(view)
        if isinstance(value, Mapping):
            return {k: value[k] for k in keys if k in value}
        return value

    return getter


def _variables(
    needs: Mapping[Need, Any],
) -> tuple[
    tuple[tuple[str, _Getter], ...], tuple[tuple[str, tuple[tuple[str, _Getter], ...]], ...]
]:
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
    return flat, tuple(nested)


def make_plan(rules: tuple[CelRule, ...], needs: Mapping[Need, Any]) -> CelPlan:
    flat, nested = _variables(needs)
    pairs = tuple((rule, rule.program) for rule in rules)
    native = _natives(pairs) if not nested else None  # a nested map is never a simple value
    return CelPlan(rules, flat, nested, pairs, _fast_path(rules), native)


def _natives(pairs: tuple[tuple[CelRule, Any], ...]) -> tuple[Native, ...] | None:
    """Each program as ``cel_native`` closures, or None when any is outside its subset (the
    library then runs them all: the context it needs costs the same for one rule as for all)."""
    natives = []
    for _, program in pairs:
        native = compile_native(program.source)
        if native is None:
            return None
        natives.append(native)
    return tuple(natives)


def _fast_path(rules: tuple[CelRule, ...]) -> FastPath | None:
    """Rewrite the rules' constant-key map reads to leaves, or None when none can be.

    A map field becomes leaves only if *every* read of it in the route is a constant-key read
    (not ``has(m.k)``, not ``m`` whole, not ``m[expr]``): then its map is not converted at all.
    """
    analysed = []
    leaf_fields = set(MAP_FIELDS)
    for rule in rules:
        code = translate(rule.expr)
        _, refs, bound = _analyse(code)
        if any(b.startswith("cs__") for b in bound):
            return None
        for ref in refs:
            if ref.fld is None:
                leaf_fields -= {(ref.var, f) for f in VARIABLES[ref.var]}
            elif not ref.leaf:
                leaf_fields.discard((ref.var, ref.fld))
        analysed.append((rule, code, refs))
    fields = frozenset(leaf_fields)
    programs: list[Any] = []
    needs: dict[Need, set[str] | None] = {}
    leaves: set[tuple[str, str, str]] = set()
    for rule, code, refs in analysed:
        text, rule_needs, _, rule_leaves = _rewrite(code, refs, fields)
        if not rule_leaves:  # this rule reads no leaf: it runs as compiled, reads as it does
            programs.append(rule.program)
            merge_needs(needs, compile_expr(rule.expr)[1])
            continue
        try:
            plain = _rewrite(code, refs, frozenset())[0]
            if plain != code:
                _compile(plain)  # the plain rewrite compiled too, so the rule is not nested
            programs.append(_compile(text))
        except CelProblem:
            return None
        merge_needs(
            needs, {k: (frozenset(v) if v is not None else None) for k, v in rule_needs.items()}
        )
        leaves |= rule_leaves
    if not leaves:
        return None
    by_map: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for var, fld, key in sorted(leaves):
        by_map.setdefault((var, fld), []).append((leaf_name(var, fld, key), key))
    flat, nested = _variables(needs)
    pairs = tuple(zip(rules, programs, strict=True))
    return FastPath(
        pairs,
        tuple((_MAPS[m], tuple(keys)) for m, keys in by_map.items()),
        flat,
        nested,
        _natives(pairs) if not nested else None,
    )


def _fast_variables(fast: FastPath, view: RequestView) -> dict[str, Any] | None:
    """The fast path's variables, or None when the plain ones must be built instead."""
    try:
        variables = {}
        for get, keys in fast.leaves:
            value = get(view)
            # ``type is dict`` first: the ABC isinstance check costs ~0.1 us more for a dict.
            if type(value) is not dict and not isinstance(value, Mapping):
                return None
            for name, key in keys:
                if key not in value:
                    return None
                variables[name] = value[key]
        for name, get in fast.flat:
            variables[name] = get(view)
        for var, fields in fast.nested:
            variables[var] = {f: get(view) for f, get in fields}
        return variables
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return None  # the plain path reads the same values and reports the error as before


def _fast_context(fast: FastPath, view: RequestView) -> Any:
    """The fast path's ``cel.Context``, or None when the plain one must be built instead."""
    variables = _fast_variables(fast, view)
    return None if variables is None else _leaf_context(variables)


def _leaf_context(variables: dict[str, Any]) -> Any:
    try:
        return cel.Context(variables=variables)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return None  # the plain path converts the same values and reports the error as before


def evaluate(plan: CelPlan, view: RequestView, hits: list[RuleHit]) -> None:
    fast = plan.fast
    if fast is not None:
        leaves = _fast_variables(fast, view)
        if leaves is not None:
            if NATIVE and fast.native is not None and _native(fast, leaves, hits):
                return
            context = _leaf_context(leaves)
            if context is not None:
                _execute(fast.pairs, context, hits)
                return
    variables: dict[str, Any] = {}
    try:
        variables = {name: get(view) for name, get in plan.flat}
        for var, fields in plan.nested:
            variables[var] = {f: get(view) for f, get in fields}
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        _malformed(variables, exc, hits)
        return
    if NATIVE and plan.native is not None and _native(plan, variables, hits):
        return
    try:
        context = cel.Context(variables=variables)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        _malformed(variables, exc, hits)
        return
    _execute(plan.pairs, context, hits)


def _malformed(variables: Mapping[str, Any], exc: BaseException, hits: list[RuleHit]) -> None:
    # One clear hit (400), not every rule failing at once: a rule like auth.required would
    # otherwise be reported for an authenticated caller, and the real cause lost.
    hits.append(RuleHit(REQUEST_MALFORMED.hit, "high", _unreadable(variables, exc)))


def _native(plan: CelPlan | FastPath, variables: Mapping[str, Any], hits: list[RuleHit]) -> bool:
    """Decide with ``cel_native``'s closures; False (nothing appended) when any result is
    not certain, so the library decides the whole route as before."""
    natives = plan.native
    assert natives is not None
    if not simple_variables(variables):
        return False
    results = []
    for native in natives:
        result = native(variables)
        if result is FALLBACK:
            return False
        results.append(result)
    for (rule, _), result in zip(plan.pairs, results, strict=True):
        if result is not True:
            hits.append(_result_hit(rule, result))
    return True


def _unreadable(variables: Mapping[str, Any], exc: BaseException) -> str:
    """Which variable CEL could not take, and why, in words that name no library."""
    where = "a request value"
    for name, value in variables.items():
        if not _convertible(name, value):
            where = _public_name(name)
            if not name.startswith("cs__") and isinstance(value, dict):
                bad = [f for f, v in value.items() if not _convertible(name, {f: v})]
                where = f"{name}.{bad[0]}" if bad else name
            break
    if _has_surrogate(variables):
        return (
            f"{where} holds text that is not valid Unicode (a lone surrogate such as \\ud800): "
            "the route's CEL rules cannot read it"
        )
    return f"{where} cannot be read by the route's CEL rules ({type(exc).__name__})"


def _convertible(name: str, value: Any) -> bool:
    try:
        cel.Context(variables={name: value})
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return False
    return True


def _public_name(name: str) -> str:
    """``cs__request__body__k__x`` -> ``request.body``; ``identity`` stays ``identity``."""
    if not name.startswith("cs__"):
        return name
    parts = name[4:].split("__")
    return ".".join(parts[:2])


def _has_surrogate(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if depth > 200:
        return False
    if isinstance(value, Mapping):
        return any(_has_surrogate(k, depth + 1) or _has_surrogate(v, depth + 1)
                   for k, v in value.items())  # fmt: skip
    if isinstance(value, list | tuple):
        return any(_has_surrogate(v, depth + 1) for v in value)
    return False


def _execute(pairs: tuple[tuple[CelRule, Any], ...], context: Any, hits: list[RuleHit]) -> None:
    for rule, program in pairs:
        try:
            result = program.execute(context)
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
            hits.append(_result_hit(rule, result))


def _result_hit(rule: CelRule, result: object) -> RuleHit:
    why = "is false" if result is False else "did not evaluate to a boolean"
    return RuleHit(rule.id, rule.severity, rule.message or f"{rule.expr} {why}")
