"""Contracts: JSON Schema 2020-12 (engine choice) and rejectUnknownFields."""

from __future__ import annotations

import pytest

from extauthz.decision import RuleHit
from extauthz.engine.contract import (
    SchemaProblem,
    compile_contract,
    compile_validator,
    fast_compatible,
    field_tree,
    unknown_fields,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"
USER = {
    "$schema": DRAFT,
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "email": {"type": "string", "format": "email"},
        "website": {"type": "string", "format": "uri"},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
        },
        "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {}}}},
        "meta": {"type": "object"},
    },
}


@pytest.mark.parametrize("engine", ["fastjsonschema", "jsonschema"])
def test_both_engines_agree_on_the_basics(engine: str) -> None:
    validate, used = compile_validator(USER, engine=engine)
    assert used == engine
    assert validate({"name": "Ada"}) is None
    assert validate({"name": ""}) is not None
    assert validate({}) is not None
    assert validate({"name": "Ada", "email": "not an email"}) is not None
    assert validate({"name": "Ada", "website": "https://example.com/x"}) is None
    assert validate([1, 2]) is not None
    assert validate(None) is not None


def test_auto_picks_fastjsonschema_only_for_draft7_compatible_schemas() -> None:
    assert fast_compatible(USER)
    assert compile_validator(USER)[1] == "fastjsonschema"
    only_2020 = [
        {"type": "array", "prefixItems": [{"type": "string"}], "items": False},
        {"type": "object", "unevaluatedProperties": False},
        {"type": "object", "dependentRequired": {"a": ["b"]}},
        {"$defs": {"n": {"type": "integer"}}, "$ref": "#/$defs/n", "minimum": 3},
        {"type": "array", "minContains": 2, "contains": {"type": "integer"}},
    ]
    for schema in only_2020:
        assert not fast_compatible(schema), schema
        assert compile_validator(schema)[1] == "jsonschema"


def test_2020_semantics_hold_when_falling_back() -> None:
    validate, used = compile_validator(
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False}
    )
    assert used == "jsonschema"
    assert validate(["a", 1]) is None
    assert validate(["a", "b"]) is not None
    assert validate(["a", 1, 2]) is not None
    ref_sibling, used = compile_validator(
        {"$defs": {"n": {"type": "integer"}}, "$ref": "#/$defs/n", "minimum": 3}
    )
    assert ref_sibling(5) is None and ref_sibling(2) is not None


def test_defs_refs_work_with_fastjsonschema() -> None:
    schema = {
        "$schema": DRAFT,
        "$defs": {"id": {"type": "string", "pattern": "^[a-z]+$"}},
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/id"}},
    }
    validate, used = compile_validator(schema)
    assert used == "fastjsonschema"
    assert validate({"a": "abc"}) is None
    assert validate({"a": "ABC"}) is not None


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"type": "nonsense"}, "invalid JSON Schema"),
        ({"minLength": -1}, "invalid JSON Schema"),
        ({"properties": {"a": {"$ref": "https://example.com/s.json"}}}, "only local"),
        ({"$ref": "other.json#/x"}, "only local"),
        ([1, 2], "object or a boolean"),
    ],
)
def test_unusable_schemas_are_refused(schema: object, reason: str) -> None:
    with pytest.raises(SchemaProblem, match=reason):
        compile_validator(schema)


def test_validation_does_not_mutate_the_body() -> None:
    validate, _ = compile_validator(
        {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}}
    )
    body: dict[str, str] = {}
    assert validate(body) is None
    assert body == {}


def test_unknown_fields_nested_and_in_arrays() -> None:
    tree = field_tree(USER)
    assert unknown_fields(tree, {"name": "a"}) == []
    assert unknown_fields(tree, {"name": "a", "admin": True}) == ["admin"]
    assert unknown_fields(tree, {"address": {"city": "x", "planet": "mars"}}) == ["address.planet"]
    assert unknown_fields(tree, {"tags": [{"k": 1}, {"k": 2, "v": 3}]}) == ["tags.v"]
    # A free-form object (no properties declared) accepts anything below it.
    assert unknown_fields(tree, {"meta": {"anything": {"goes": 1}}}) == []


def test_unknown_fields_follow_refs_and_combinators() -> None:
    schema = {
        "$defs": {"base": {"properties": {"id": {"type": "string"}}}},
        "allOf": [{"$ref": "#/$defs/base"}, {"properties": {"name": {"type": "string"}}}],
        "anyOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}],
        "properties": {"node": {"$ref": "#"}},
    }
    tree = field_tree(schema)
    assert unknown_fields(tree, {"id": "1", "name": "n", "a": 1, "b": 2}) == []
    assert unknown_fields(tree, {"id": "1", "zzz": 1}) == ["zzz"]
    # recursive $ref: stops at the recursion, no infinite loop
    assert unknown_fields(tree, {"node": {"node": {"x": 1}}}) == []


def test_additional_and_pattern_properties_declare_keys() -> None:
    tree = field_tree(
        {
            "properties": {
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "x": {"type": "object", "patternProperties": {"^x-": {}}, "properties": {}},
            }
        }
    )
    assert unknown_fields(tree, {"labels": {"any": "thing"}}) == []
    assert unknown_fields(tree, {"x": {"x-trace": 1, "y": 2}}) == ["x.y"]


def test_unknown_fields_open_objects_patterns_and_limit() -> None:
    tree = field_tree(
        {
            "properties": {
                "open": {
                    "type": "object",
                    "additionalProperties": True,
                    "properties": {"inner": {"properties": {"ok": {}}}},
                },
                "p": {"type": "object", "patternProperties": {"^x-": {}}, "properties": {"d": {}}},
            }
        }
    )
    # An open object accepts undeclared keys (and anything below them) but still checks below
    # the keys it declares.
    body = {"open": {"free": {"deep": 1}, "inner": {"ok": 1, "bad": 2}}}
    assert unknown_fields(tree, body) == ["open.inner.bad"]
    # A pattern declares the keys it matches, and what is below them is free-form.
    assert unknown_fields(tree, {"p": {"d": 1, "x-a": {"z": 1}, "y": [1]}}) == ["p.y"]
    many = {f"k{i}": 1 for i in range(20)}
    assert unknown_fields(tree, many) == [f"k{i}" for i in range(10)]
    assert unknown_fields(tree, many, limit=3) == ["k0", "k1", "k2"]


def test_contract_hits() -> None:
    contract = compile_contract(USER, reject_unknown=True, source="<inline>")
    hits: list[RuleHit] = []
    contract.check({"name": 1, "extra": 2}, hits)
    assert [h.id for h in hits] == ["contract.schema.invalid", "contract.unknownField"]
    assert "body.name" in hits[0].message and "extra" in hits[1].message
    lax = compile_contract(USER, reject_unknown=False, source="<inline>")
    hits = []
    lax.check({"name": "a", "extra": 2}, hits)
    assert hits == []
