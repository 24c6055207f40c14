"""Parameter checks: an operation's declared path, query, header and cookie parameters.

Pure: the policy compiler (``extauthz.policy._openapi``) builds ``ParameterChecks`` from an
OpenAPI operation, each parameter's schema compiled once into a validator and read into a
``deserialize.Shape``. Here a request's strings are read the way the parameter's ``style`` and
``explode`` serialize them (OpenAPI 3's table: ``simple``, ``label`` and ``matrix`` in a path,
``form``, ``spaceDelimited``, ``pipeDelimited`` and ``deepObject`` in a query, ``simple`` in a
header, ``form`` in a cookie), coerced to the schema's types, and validated; a parameter
described by ``content`` (``application/json``) is parsed as JSON first.

The context carries a repeated query key comma-joined (``?id=1&id=2`` is ``"1,2"``), so an
array parameter's items are split on commas whatever its style says (an item holding a comma
reads as two). A ``deepObject`` parameter takes every query key ``name[...]`` (bracketed keys
build nested objects and arrays, see ``deserialize.build``); a bracketed key whose base names
a parameter of another style is read as that parameter too (an upstream on Rails or PHP would:
``?customer[x]=1`` makes ``customer`` an object), so it is checked against its schema and never
ignored. With ``rejectUnknownParameters``, query keys no parameter declares, and keys under a
``deepObject`` parameter its schema does not declare, are ``contract.parameter.unknown``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..decision import RuleHit
from .checks.contract import PARAMETER_INVALID, PARAMETER_UNKNOWN
from .contract import unknown_fields
from .deserialize import (
    ANY,
    SEPARATORS,
    Encoding,
    Shape,
    build,
    coerce,
    parse_key,
    shown,
    split_items,
    split_object,
)

_MAX_JSON_PARAMETER = 65_536
_MAX_JSON_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str  # as declared; header names are matched lower-case
    location: str  # "path" | "query" | "header" | "cookie"
    required: bool
    style: str  # OpenAPI's, with its default for the location
    explode: bool
    shape: Shape  # what the schema allows where (``deserialize.shape_of``)
    validate: Callable[[Any], str | None]
    media: str = ""  # a ``content`` parameter's media type (JSON ones are parsed)
    # deepObject parameters: the field tree of its schema (``contract.FieldTree``), for
    # ``rejectUnknownParameters``; None when unknown keys are not looked for
    unknown: Any = None


def _json(raw: str) -> tuple[Any, str | None]:
    from .decoders._base import json_depth

    if len(raw) > _MAX_JSON_PARAMETER:
        return None, f"longer than {_MAX_JSON_PARAMETER} characters"
    data = raw.encode("utf-8", "surrogatepass")
    if json_depth(data) > _MAX_JSON_DEPTH:
        return None, f"JSON nested deeper than {_MAX_JSON_DEPTH}"
    try:
        return json.loads(raw), None
    except (ValueError, RecursionError):
        return None, "is not JSON"


def _styled(p: Parameter, raw: str, problems: list[str], where: str) -> Any:
    """One string of a path, header, cookie or non-deepObject query parameter, typed."""
    shape = p.shape
    if p.media:
        if "json" in p.media:
            value, error = _json(raw)
            if error is not None:
                problems.append(f"{where} {shown(raw)} {error}")
                return _INVALID
            return value
        return raw
    style = p.style
    if style == "label" or style == "matrix":
        prefix = "." if style == "label" else ";"
        if not raw.startswith(prefix):
            problems.append(f"{where} {shown(raw)}: a {style}-style value starts with {prefix!r}")
            return _INVALID
        if style == "label":
            sep = "." if p.explode else ","
            body = raw[1:]
        else:
            sep = ";" if p.explode else ","
            body = raw[1:]
            if not (p.explode and shape.object_only):
                # ;name=a;name=b (exploded array) or ;name=a,b / ;name=value
                head = f"{p.name}="
                bits = body.split(";")
                if not all(b.startswith(head) for b in bits):
                    problems.append(f"{where} {shown(raw)}: expected ';{p.name}=...'")
                    return _INVALID
                values = [b[len(head) :] for b in bits]
                body = ";".join(values) if p.explode else values[-1]
                if len(values) > 1 and not shape.array:
                    problems.append(f"{where} is sent {len(values)} times")
        if shape.array and not shape.string and not shape.scalars:
            return split_items(body, shape, sep)
        if shape.object_only:
            if p.explode:
                return _pairs_object(body, shape, sep, problems, where)
            return split_object(body, shape, ",", problems, where)
        return coerce(body, shape)
    sep = SEPARATORS.get(style, ",")
    if shape.array and not shape.string and not shape.scalars:
        return split_items(raw, shape, sep)
    if shape.object_only:
        if style == "simple" and p.explode:
            return _pairs_object(raw, shape, ",", problems, where)
        return split_object(raw, shape, sep, problems, where)
    return coerce(raw, shape)


def _pairs_object(raw: str, shape: Shape, sep: str, problems: list[str], where: str) -> Any:
    """``R=100,G=200`` (an exploded object in a path or header)."""
    out: dict[str, Any] = {}
    for bit in raw.split(sep) if raw else ():
        key, eq, value = bit.partition("=")
        if not eq:
            problems.append(f"{where} {shown(raw)}: {shown(bit)} is not key=value")
            return _INVALID
        out[key] = coerce(value, shape.child(key))
    return out


_INVALID = object()  # a value already reported as a problem


def cookies(header: str | None) -> dict[str, str]:
    """The ``cookie`` header's pairs; a repeated name comma-joined, as query keys are."""
    out: dict[str, str] = {}
    for bit in (header or "").split(";"):
        name, eq, value = bit.strip().partition("=")
        if eq and name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            out[name] = f"{out[name]},{value}" if name in out else value
    return out


@dataclass(frozen=True, slots=True)
class ParameterChecks:
    params: tuple[Parameter, ...]
    known_query: frozenset[str] | None  # None: undeclared query parameters are allowed
    # query parameters whose bracketed keys are theirs (deepObject ones, and every other by
    # its base name: see the module docstring)
    bracketed: frozenset[str] = frozenset()
    # an exploded ``form`` object parameter without declared properties takes any key
    open_query: bool = False

    def check(
        self,
        path_params: Mapping[str, str],
        query: Mapping[str, str],
        headers: Mapping[str, str],
        hits: list[RuleHit],
    ) -> None:
        problems: list[str] = []
        unknown: list[str] = []
        jar: dict[str, str] | None = None
        groups = _bracket_groups(query, self.bracketed) if self.bracketed and query else {}
        claimed: set[str] = set()
        for p in self.params:
            where = f"{p.location} parameter {p.name!r}"
            loc = p.location
            value: Any = _INVALID
            present = True
            if loc == "query":
                value, present = self._query(p, query, groups, claimed, problems, where)
            else:
                if loc == "header":
                    raw = headers.get(p.name.lower())
                elif loc == "cookie":
                    if jar is None:
                        jar = cookies(headers.get("cookie"))
                    raw = jar.get(p.name)
                else:
                    raw = path_params.get(p.name)
                if raw is None:
                    present = False
                else:
                    value = _styled(p, raw, problems, where)
            if not present:
                if p.required:
                    problems.append(f"{where} is required")
                continue
            if value is _INVALID:
                continue
            error = p.validate(value)
            if error is not None:
                if error.startswith("body"):  # the validator names its instance the body
                    error = "value" + error[4:]
                problems.append(f"{where} {_show(value)}: {error}")
            elif p.unknown is not None and self.known_query is not None:
                unknown.extend(
                    f"{p.name}[{k.replace('.', '][')}]" for k in unknown_fields(p.unknown, value)
                )
        if problems:
            hits.append(RuleHit(PARAMETER_INVALID, "high", "; ".join(problems)[:300]))
        if self.known_query is not None:
            extra = unknown + sorted(
                k
                for k in query
                if k not in self.known_query and k not in claimed and not self.open_query
            )
            if extra:
                names = ", ".join(repr(k[:MAX_NAME]) for k in extra[:10])
                hits.append(
                    RuleHit(PARAMETER_UNKNOWN, "high", f"undeclared query parameter(s): {names}")
                )

    def _query(
        self,
        p: Parameter,
        query: Mapping[str, str],
        groups: dict[str, list[tuple[str, str]]],
        claimed: set[str],
        problems: list[str],
        where: str,
    ) -> tuple[Any, bool]:
        """(value, present) of a query parameter."""
        shape = p.shape
        plain = query.get(p.name)
        group = groups.get(p.name)
        if p.style == "form" and p.explode and shape.object_only and not p.media:
            # each property is a query key of its own
            keys = [k for k in query if k in shape.props]
            if self.open_query and shape.extra is not None:
                others = {q.name for q in self.params if q.location == "query"} - {p.name}
                keys = [k for k in query if k not in others and k not in groups_keys(groups)]
            if not keys:
                return _INVALID, False
            claimed.update(keys)
            return {k: coerce(query[k], shape.child(k)) for k in keys}, True
        if group is None:
            if plain is None:
                return _INVALID, False
            return _styled(p, plain, problems, where), True
        claimed.update(k for k, _ in group)
        if plain is not None:
            problems.append(f"{where} is sent both as a value and with bracketed keys")
            return _INVALID, True
        if p.style != "deepObject":
            problems.append(
                f"{where} is not an object parameter (style {p.style}) but is sent as "
                f"{shown(group[0][0])}"
            )
            return _INVALID, True
        pairs: list[tuple[str, str]] = []
        for key, raw in group:
            if parse_key(key) is None:
                problems.append(f"{where}: {shown(key)} is not a well-formed bracketed key")
                return _INVALID, True
            if key.endswith("[]") and "," in raw:
                pairs.extend((key, item) for item in raw.split(","))
            else:
                pairs.append((key, raw))
        holder = Shape(string=False, object=True, props={p.name: shape})
        built, errors = build(pairs, holder, {p.name: Encoding("deepObject")}, where="query")
        problems.extend(errors)
        return (built.get(p.name, _INVALID) if not errors else _INVALID), True


MAX_NAME = 60


def groups_keys(groups: dict[str, list[tuple[str, str]]]) -> set[str]:
    return {k for group in groups.values() for k, _ in group}


def _show(value: Any) -> str:
    if isinstance(value, str):
        return shown(value)
    try:
        return shown(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    except (TypeError, ValueError):
        return "(value)"


def _bracket_groups(
    query: Mapping[str, str], bases: frozenset[str]
) -> dict[str, list[tuple[str, str]]]:
    """Query keys ``base[...]`` by base, for the bases that are declared parameters."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for key, value in query.items():
        if "[" in key:
            segs = parse_key(key)
            base = segs[0] if segs is not None else key.partition("[")[0]
            if base in bases:
                groups.setdefault(base, []).append((key, value))
    return groups


__all__ = ["ANY", "Parameter", "ParameterChecks", "cookies"]
