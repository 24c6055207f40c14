"""``MetaschemaChecks`` (one per policy load) decides every schema as the plain check does.

It splits a schema into its root and ``$defs`` entries and remembers the pieces found valid;
these tests pin that it refuses the same schemas with the same error (message, instance path,
schema path) as ``Draft202012Validator.check_schema``, with a cold cache and with one warmed
by the valid schemas around it, and that a repeated component really is checked once.
"""

from __future__ import annotations

import datetime
from types import MappingProxyType
from typing import Any

import jsonschema
import pytest

from extauthz.engine.contract import SchemaProblem, check_schema
from extauthz.engine.metaschema import MetaschemaChecks, canonical_json, check_plain

ADDRESS = {"type": "object", "properties": {"zip": {"type": "string"}}, "required": ["zip"]}
MONEY = {"type": "object", "properties": {"amount": {"type": "number", "minimum": 0}}}
DEFS = {"Address": ADDRESS, "Money": MONEY}


def _bundle(name: str, **extra_defs: Any) -> dict[str, Any]:
    body = {"type": "object", "properties": {"a": {"$ref": "#/$defs/Address"}}}
    return {"$ref": f"#/$defs/{name}", "$defs": {name: body, **DEFS, **extra_defs}}


# Valid and invalid schemas mixed, so that a warm cache has seen every valid piece of the
# invalid ones before it meets them.
CORPUS: list[Any] = [
    _bundle("Req0"),
    _bundle("Req1"),
    {"type": 5, "$defs": DEFS},  # the root is wrong, its $defs are known
    _bundle("Req2", Bad={"minLength": -1}),  # one entry is wrong among known ones
    {"$defs": {**DEFS, "Deep": {"properties": {"x": {"type": "nope"}}}}},
    {"$defs": {**DEFS, "Five": 5}},
    {"$defs": [ADDRESS]},  # $defs not an object: not split
    {"$defs": MappingProxyType(DEFS)},  # a Mapping, but not the metaschema's "object"
    MappingProxyType({"$defs": DEFS}),  # the same for the root
    {"$defs": {"Re": {"pattern": "["}}},  # format "regex"
    {"$defs": {"T": True, "F": False}},
    True,
    False,
    5,
    {"const": (1, 2), "$defs": DEFS},  # values canonical JSON cannot carry: not remembered
    {"enum": [float("nan")], "$defs": DEFS},
    {"default": datetime.date(2026, 12, 4), "$defs": DEFS},
    {"properties": {1: {"type": "string"}}, "$defs": DEFS},
    {"minimum": True, "$defs": DEFS},
    {"minimum": 1, "$defs": DEFS},
    {"$defs": {"Money": {**MONEY, "minimum": True}}},
]


def _outcome(check: Any, schema: Any) -> tuple[str, list[Any], list[Any]] | None:
    try:
        check(schema)
    except jsonschema.SchemaError as exc:
        return exc.message, list(exc.absolute_path), list(exc.absolute_schema_path)
    return None


PLAIN = [_outcome(check_plain, s) for s in CORPUS]


def test_the_corpus_has_both_kinds() -> None:
    assert sum(o is None for o in PLAIN) >= 5 and sum(o is not None for o in PLAIN) >= 8


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_same_outcome_as_the_plain_check(order: str) -> None:
    checks = MetaschemaChecks()
    indices = list(range(len(CORPUS)))
    if order == "reverse":
        indices.reverse()
    for _ in range(2):  # the second round meets every valid piece remembered
        for i in indices:
            assert _outcome(checks.check, CORPUS[i]) == PLAIN[i], (i, CORPUS[i])


def test_same_outcome_with_a_cold_cache() -> None:
    for i, schema in enumerate(CORPUS):
        assert _outcome(MetaschemaChecks().check, schema) == PLAIN[i], (i, schema)


def test_same_schema_problem_text() -> None:
    checks = MetaschemaChecks()
    for schema in [_bundle("Req0"), *CORPUS]:
        texts = []
        for shared in (None, checks):
            try:
                check_schema(schema, shared)
                texts.append(None)
            except SchemaProblem as exc:
                texts.append(str(exc))
        assert texts[0] == texts[1], schema


def test_a_repeated_component_is_checked_once() -> None:
    checks = MetaschemaChecks()
    checks.check(_bundle("Req0"))
    assert checks.validated == 4  # the root, Req0, Address, Money
    checks.check(_bundle("Req1"))
    assert checks.validated == 5  # the new root only (Req1 has Req0's content)
    checks.check(_bundle("Req1"))
    assert checks.validated == 5
    with pytest.raises(jsonschema.SchemaError):
        checks.check(_bundle("Req2", Bad={"minLength": -1}))
    assert canonical_json({"minLength": -1}) not in checks.passed


def test_canonical_json() -> None:
    assert canonical_json({"b": 1, "a": [True, None]}) == canonical_json(
        {"a": [True, None], "b": 1}
    )
    assert canonical_json({"a": 1}) != canonical_json({"a": True})
    assert canonical_json({"a": 1}) != canonical_json({"a": 1.0})
    for odd in ((1, 2), {1: "x"}, float("nan"), datetime.date(2026, 12, 4), {"a": {1}}):
        assert canonical_json(odd) is None, odd
