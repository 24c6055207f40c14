"""NoSQL injection: a MongoDB query operator as a key (``{"$ne": 1}``, ``a[$ne]``) or as a
value, or embedded in a JSON-looking string. Opt-in."""

from __future__ import annotations

import re
from typing import Any

from ._kinds import Detector

NOSQL_OPERATORS = frozenset(
    {
        "$where", "$ne", "$eq", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$regex",
        "$exists", "$or", "$and", "$not", "$nor", "$expr", "$elemmatch", "$function",
        "$accumulator", "$jsonschema", "$text", "$type", "$mod", "$all", "$size",
    }
)  # fmt: skip
_NOSQL_IN_KEY = re.compile(r"\[\s*(\$[A-Za-z]+)\s*\]")
_NOSQL_IN_VALUE = re.compile(r"[{,]\s*[\"']?(\$[A-Za-z]+)[\"']?\s*:")


def nosql_key_reason(key: str) -> str | None:
    """An operator as the key (``$ne``), or in brackets (``a[$ne]``, as qs-style parsers read)."""
    found = _NOSQL_IN_KEY.search(key) if "[" in key else None
    for operator in (key if key[:1] == "$" else "", found.group(1) if found else ""):
        if operator and operator.lower() in NOSQL_OPERATORS:
            return f"operator key {operator!r}"
    return None


def nosql_value_reason(value: str) -> str | None:
    if "$" not in value:
        return None
    if value.lower() in NOSQL_OPERATORS:
        return f"operator value {value!r}"
    if "{" in value:
        m = _NOSQL_IN_VALUE.search(value)
        if m is not None and m.group(1).lower() in NOSQL_OPERATORS:
            return f"embedded operator {m.group(1)!r}"
    return None


def _nosql_key(key: str, value: Any) -> str | None:
    return nosql_key_reason(key) if "$" in key else None


EXPLAIN = "a MongoDB query operator where the upstream expects plain data"
CHECK = Detector("nosqlInjection", "vulnerability.nosqlInjection", False, EXPLAIN,
                 strings=nosql_value_reason, string_triggers=("$",),
                 keys=_nosql_key, key_triggers=("$",))  # fmt: skip
