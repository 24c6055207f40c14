"""Parameter checks: an operation's declared path, query and header parameters.

Pure: the policy compiler (``extauthz.policy._openapi``) builds ``ParameterChecks`` from an
OpenAPI operation with each parameter's schema compiled once into a validator; here a request's
string values are coerced to the schema's type (``"5"`` -> 5 for ``integer``, comma-separated
items for arrays in the ``form``/``simple`` styles) and validated. A value that does not coerce
is validated as the string it is, so the schema's own ``type`` error names the problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..decision import RuleHit
from .checks.contract import PARAMETER_INVALID, PARAMETER_UNKNOWN

_INT = re.compile(r"-?[0-9]{1,300}\Z", re.ASCII)
_NUMBER = re.compile(r"-?[0-9]{1,300}(\.[0-9]{1,300})?([eE][-+]?[0-9]{1,4})?\Z", re.ASCII)
_MAX_SHOWN = 60


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str  # as declared; header names are matched lower-case
    location: str  # "path" | "query" | "header"
    required: bool
    kind: str  # the schema's type: string, integer, number, boolean, array, or "" (any)
    item_kind: str  # for arrays: the items' type
    separator: str  # for arrays: "," (form, simple), " " (spaceDelimited), "|" (pipeDelimited)
    validate: Callable[[Any], str | None]


def _coerce(kind: str, raw: str) -> Any:
    if kind == "integer" and _INT.match(raw):
        return int(raw)
    if kind == "number" and _NUMBER.match(raw):
        return float(raw) if ("." in raw or "e" in raw or "E" in raw) else int(raw)
    if kind == "boolean" and raw in ("true", "false"):
        return raw == "true"
    return raw


def coerce(param: Parameter, raw: str) -> Any:
    """The typed value of one parameter's string form."""
    if param.kind == "array":
        if raw == "":
            return []
        return [_coerce(param.item_kind, item) for item in raw.split(param.separator)]
    return _coerce(param.kind, raw)


def _shown(value: str) -> str:
    return repr(value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "...")


@dataclass(frozen=True, slots=True)
class ParameterChecks:
    params: tuple[Parameter, ...]
    known_query: frozenset[str] | None  # None: undeclared query parameters are allowed

    def check(
        self,
        path_params: Mapping[str, str],
        query: Mapping[str, str],
        headers: Mapping[str, str],
        hits: list[RuleHit],
    ) -> None:
        problems: list[str] = []
        for p in self.params:
            if p.location == "query":
                raw = query.get(p.name)
            elif p.location == "header":
                raw = headers.get(p.name.lower())
            else:
                raw = path_params.get(p.name)
            if raw is None:
                if p.required:
                    problems.append(f"{p.location} parameter {p.name!r} is required")
                continue
            error = p.validate(coerce(p, raw))
            if error is not None:
                if error.startswith("body"):  # the validator names its instance the body
                    error = "value" + error[4:]
                problems.append(f"{p.location} parameter {p.name!r} {_shown(raw)}: {error}")
        if problems:
            hits.append(RuleHit(PARAMETER_INVALID, "high", "; ".join(problems)[:300]))
        if self.known_query is not None:
            extra = sorted(k for k in query if k not in self.known_query)
            if extra:
                names = ", ".join(repr(k[:_MAX_SHOWN]) for k in extra[:10])
                hits.append(
                    RuleHit(PARAMETER_UNKNOWN, "high", f"undeclared query parameter(s): {names}")
                )
