"""The 2020-12 metaschema check, shared by the schemas of one policy load.

A bundled OpenAPI contract carries every component it references in its root's ``$defs``, so
a large spec hands the same components to the metaschema check once per operation, and again
for each operation's structural schema: that check was most of a spec's load time. The
metaschema checks a ``$defs`` entry exactly as it checks a root (``$defs`` is an object whose
values are ``{"$dynamicRef": "#meta"}``, the whole metaschema), so a schema passes if and only
if its root without ``$defs`` and each ``$defs`` entry pass. Each piece that passes is
remembered by its canonical JSON and not checked again in the same load. A refusal is never
read from a piece: the plain check of the whole schema runs and gives the error it always gave.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

# what ``Draft202012Validator.check_schema`` builds on every call
_META = Draft202012Validator(
    Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
)


def check_plain(schema: Any) -> None:
    """Raise ``jsonschema.SchemaError`` (the first error) unless ``schema`` is a 2020-12 schema."""
    Draft202012Validator.check_schema(schema)


@dataclass
class MetaschemaChecks:
    """The pieces found valid during one policy load; ``check`` stands in for ``check_plain``.

    One per load, so nothing is carried from one load to the next.
    """

    passed: set[str] = field(default_factory=set)  # canonical JSON of the pieces found valid
    validated: int = 0  # pieces run through the metaschema (the rest were remembered)
    # (engine, repr of the schema) -> (validate, engine name): ``contract.compile_validator``'s
    # results, shared by equal schemas in the same load
    validators: dict[tuple[str, str], Any] = field(default_factory=dict)

    def check(self, schema: Any) -> None:
        """Raise exactly what ``check_plain(schema)`` raises; return when it returns."""
        for piece in _pieces(schema):
            key = canonical_json(piece)
            if key is not None and key in self.passed:
                continue
            self.validated += 1
            if not _valid(piece):
                check_plain(schema)  # the whole schema's own error, as without this class
                return  # not reached: a piece fails only when the whole schema does
            if key is not None:
                self.passed.add(key)


def _valid(piece: Any) -> bool:
    """``_META.is_valid(piece)``, asked of jsonschema-rs first when it can answer the same.

    The Python check takes ~4 s of CPU on Stripe's description (its bodies are large and
    distinct); jsonschema-rs takes milliseconds. Its "valid" is taken only for a piece made of
    plain JSON values (dict, list, str, int, float, bool, None: what jsonschema-rs reads as
    jsonschema does) whose ``pattern``s and ``patternProperties`` keys all compile with
    Python's ``re`` (the ``regex`` format, the only one of the metaschema's formats the Python
    check asserts, see ``_RS_AGREES``); anything else, and every "invalid", is asked of
    ``_META``.
    """
    if FAST_METASCHEMA and _RS_META is not None:
        patterns = _plain_patterns(piece)
        if patterns is not None:
            try:
                if _RS_META.is_valid(piece) and all(_regex_ok(p) for p in patterns):
                    return True
            except (ValueError, TypeError, OverflowError):
                pass
    return _META.is_valid(piece)


# The seam: False asks ``_META`` for every piece.
FAST_METASCHEMA = True
# The formats the 2020-12 metaschema names; jsonschema asserts those it has a checker for.
_META_FORMATS = frozenset({"regex", "uri", "uri-reference", "iri", "iri-reference"})
_RS_AGREES = Draft202012Validator.FORMAT_CHECKER.checkers.keys() & _META_FORMATS == {
    "regex"
}  # with rfc3987 installed jsonschema would check URIs too, and this path steps aside


def _rs_meta() -> Any:
    if not _RS_AGREES:
        return None
    try:
        import jsonschema_rs
    except ImportError:  # the dependency is declared; without it the Python check decides
        return None
    return jsonschema_rs.Draft202012Validator(
        Draft202012Validator.META_SCHEMA, validate_formats=False
    )


_RS_META = _rs_meta()
_PLAIN = (str, int, float, bool, type(None))


def _plain_patterns(node: Any) -> list[str] | None:
    """Every ``pattern`` and ``patternProperties`` key, or None if not plain JSON values."""
    found: list[str] = []
    stack = [node]
    while stack:
        n = stack.pop()
        kind = type(n)
        if kind is dict:
            for k, v in n.items():
                if type(k) is not str:
                    return None
                stack.append(v)
            pattern = n.get("pattern")
            if type(pattern) is str:
                found.append(pattern)
            pp = n.get("patternProperties")
            if type(pp) is dict:
                found.extend(pp)
        elif kind is list:
            stack.extend(n)
        elif kind not in _PLAIN:
            return None
    return found


def _regex_ok(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _pieces(schema: Any) -> list[Any]:
    """The root without ``$defs`` and each ``$defs`` entry; the schema itself otherwise.

    Only plain dicts are split: the metaschema's ``"type": "object"`` is ``isinstance(x,
    dict)``, and the root rebuilt without ``$defs`` is a dict whatever it was.
    """
    defs = schema.get("$defs") if isinstance(schema, dict) else None
    if not isinstance(defs, dict):
        return [schema]
    return [{k: v for k, v in schema.items() if k != "$defs"}, *defs.values()]


def canonical_json(value: Any) -> str | None:
    """Sorted, compact JSON that reads back as ``value``; None when there is none.

    Equal texts mean equal JSON documents. A value JSON cannot carry faithfully (a date, a
    tuple, a non-string key, NaN) gives None and is simply not remembered.
    """
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None
    try:
        same = json.loads(text) == value
    except (ValueError, RecursionError):
        return None
    return text if same else None
