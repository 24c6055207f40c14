"""The fast OpenAPI document check against openapi-spec-validator itself.

``_openapi_check.accepts`` may say no to a valid document (the validator then decides), never
yes to one the validator refuses; and a load refuses a document with the same words either
way. Pinned over a corpus of broken documents (one per kind of refusal the validator makes),
random mutations of a valid one, and the large generated descriptions.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.specgen import github_like, stripe_like
from extauthz.policy import _openapi_check
from extauthz.policy._openapi import OpenApiLoader, OpenApiProblem, _spec_validator

DATA = Path(__file__).parent / "data" / "openapi"


def _base(version: str = "3.0.3") -> dict[str, Any]:
    return {
        "openapi": version,
        "info": {"title": "t", "version": "1"},
        "tags": [{"name": "pets"}, {"name": "stores"}],
        "paths": {
            "/pets/{petId}": {
                "parameters": [
                    {"name": "petId", "in": "path", "required": True,
                     "schema": {"type": "integer", "minimum": 1}},
                ],
                "get": {
                    "operationId": "getPet",
                    "parameters": [
                        {"name": "limit", "in": "query",
                         "schema": {"type": "integer", "default": 10, "maximum": 100}},
                        {"$ref": "#/components/parameters/Trace"},
                    ],
                    "responses": {
                        "200": {"description": "ok", "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Pet"}}}},
                        "404": {"$ref": "#/components/responses/NotFound"},
                    },
                },
                "post": {
                    "operationId": "updatePet",
                    "requestBody": {"content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Pet"}}}},
                    "responses": {"204": {"description": "done"}},
                },
            }
        },
        "components": {
            "parameters": {
                "Trace": {"name": "x-trace", "in": "header", "schema": {"type": "string",
                                                                        "pattern": "^[a-f0-9]+$"}},
            },
            "responses": {"NotFound": {"description": "no", "content": {"application/json": {
                "schema": {"type": "object", "properties": {"message": {"type": "string"}}}}}}},
            "schemas": {
                "Pet": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "maxLength": 50},
                        "tag": {"type": "string", "nullable": True, "default": None},
                        "kind": {"type": "string", "enum": ["cat", "dog"], "default": "cat"},
                        "owner": {"$ref": "#/components/schemas/Owner"},
                    },
                },
                "Owner": {
                    "allOf": [{"$ref": "#/components/schemas/Named"},
                              {"type": "object", "properties": {"age": {"type": "integer"}}}],
                    "required": ["name", "age"],
                },
                "Named": {"type": "object", "properties": {"name": {"type": "string"}}},
                "Labelled": {  # referenced by nothing: the validator visits it at the top
                    "allOf": [{"$ref": "#/components/schemas/Named"}],
                    "required": ["name"],
                },
            },
        },
    }  # fmt: skip


_DELETE = object()


def _mut(path: str, value: Any, version: str = "3.0.3") -> dict[str, Any]:
    doc = _base(version)
    node: Any = doc
    parts = [p.replace("~1", "/") for p in path.split("/")]
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = parts[-1]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


PET = "paths/~1pets~1{petId}"
SCHEMAS = "components/schemas"

# (name, document): each is refused by openapi-spec-validator, or accepted but unusual
CORPUS: list[tuple[str, dict[str, Any]]] = [
    ("valid", _base()),
    ("valid 3.1", _base("3.1.0")),
    ("no info", _mut("info", _DELETE)),
    ("responses not an object", _mut(f"{PET}/get/responses", 5)),
    ("parameter in body", _mut(f"{PET}/get/parameters/0/in", "body")),
    ("unknown schema keyword (3.0)", _mut(f"{SCHEMAS}/Named/bogus", 1)),
    ("x- keyword in a schema", _mut(f"{SCHEMAS}/Named/x-note", 1)),
    ("duplicate tag", _mut("tags/1/name", "pets")),
    ("duplicate parameter", _mut(f"{PET}/get/parameters/1",
                                 {"name": "limit", "in": "query", "schema": {"type": "string"}})),
    ("duplicate operationId", _mut(f"{PET}/post/operationId", "getPet")),
    ("path parameter not declared", _mut(f"{PET}/parameters", _DELETE)),
    ("declared path parameter not in the path",
     _mut(f"{PET}/get/parameters/0", {"name": "other", "in": "path", "required": True,
                                      "schema": {"type": "string"}})),
    ("type not a type", _mut(f"{SCHEMAS}/Named/type", "thing")),
    ("type a number", _mut(f"{SCHEMAS}/Named/type", 5)),
    ("maxLength negative", _mut(f"{SCHEMAS}/Pet/properties/name/maxLength", -1)),
    ("maxLength a float", _mut(f"{SCHEMAS}/Pet/properties/name/maxLength", 5.0)),
    ("required empty (draft 4)", _mut(f"{SCHEMAS}/Pet/required", [])),
    ("required not unique", _mut(f"{SCHEMAS}/Pet/required", ["name", "name"])),
    ("enum empty", _mut(f"{SCHEMAS}/Pet/properties/kind/enum", [])),
    ("pattern not a regex", _mut(f"{SCHEMAS}/Pet/properties/name/pattern", "([a-z")),
    ("pattern nested, not a regex",
     _mut(f"{SCHEMAS}/Pet/properties/owner", {"type": "object", "properties": {
         "x": {"type": "string", "pattern": "(?<bad"}}})),
    ("parameter schema pattern not a regex",
     _mut("components/parameters/Trace/schema/pattern", "[")),
    ("response schema invalid", _mut("components/responses/NotFound/content/application~1json/schema/type", 3)),
    ("allOf required undefined", _mut(f"{SCHEMAS}/Labelled/required", ["name", "ghost"])),
    ("allOf required undefined, nested", _mut(f"{SCHEMAS}/Owner/required", ["name", "ghost"])),
    ("default of the wrong type", _mut(f"{SCHEMAS}/Pet/properties/kind/default", 5)),
    ("default not in enum", _mut(f"{SCHEMAS}/Pet/properties/kind/default", "cow")),
    ("default null, not nullable", _mut(f"{SCHEMAS}/Pet/properties/name/default", None)),
    ("parameter default wrong", _mut(f"{PET}/get/parameters/0/schema/default", "ten")),
    ("parameter default above maximum", _mut(f"{PET}/get/parameters/0/schema/default", 1000)),
    ("default with a $ref inside", _mut(f"{SCHEMAS}/Pet/default", {"name": "x"})),
    ("unresolvable $ref", _mut(f"{PET}/get/responses/200/content/application~1json/schema/$ref",
                               "#/components/schemas/Nope")),
    ("unresolvable parameter $ref", _mut(f"{PET}/get/parameters/1/$ref",
                                         "#/components/parameters/Nope")),
    ("allOf cycle", _mut(f"{SCHEMAS}/Named/allOf", [{"$ref": "#/components/schemas/Owner"}])),
    ("recursive properties", _mut(f"{SCHEMAS}/Named/properties/child",
                                  {"$ref": "#/components/schemas/Named"})),
    ("boolean schema (3.0)", _mut(f"{SCHEMAS}/Named", True)),
    ("boolean schema (3.1)", _mut(f"{SCHEMAS}/Named", True, "3.1.0")),
    ("false schema (3.1)", _mut(f"{SCHEMAS}/Named/properties/name", False, "3.1.0")),
    ("type list (3.1)", _mut(f"{SCHEMAS}/Named/properties/name/type", ["string", "null"], "3.1.0")),
    ("type list (3.0)", _mut(f"{SCHEMAS}/Named/properties/name/type", ["string", "null"])),
    ("$schema in a schema (3.1)", _mut(f"{SCHEMAS}/Named/$schema",
                                       "https://json-schema.org/draft/2020-12/schema", "3.1.0")),
    ("unknown $schema (3.1)", _mut(f"{SCHEMAS}/Named/$schema", "urn:nope", "3.1.0")),
    ("jsonSchemaDialect (3.1)", _mut("jsonSchemaDialect", "https://json-schema.org/draft/2020-12/schema", "3.1.0")),
    ("pattern not a regex (3.1)", _mut(f"{SCHEMAS}/Pet/properties/name/pattern", "(", "3.1.0")),
    ("patternProperties key not a regex (3.1)",
     _mut(f"{SCHEMAS}/Named/patternProperties", {"(": {"type": "string"}}, "3.1.0")),
    ("patternProperties key not a regex (3.0)",
     _mut(f"{SCHEMAS}/Named/patternProperties", {"(": {"type": "string"}})),
    ("nullable without type", _mut(f"{SCHEMAS}/Named/nullable", True)),
    ("exclusiveMinimum boolean (3.0)", _mut(f"{PET}/parameters/0/schema/exclusiveMinimum", True)),
    ("exclusiveMinimum boolean (3.1)",
     _mut(f"{PET}/parameters/0/schema/exclusiveMinimum", True, "3.1.0")),
    ("operationId null", _mut(f"{PET}/get/operationId", None)),
    ("tag without name", _mut("tags/0", {"description": "x"})),
    ("path without slash", {**_base(), "paths": {"pets": _base()["paths"]["/pets/{petId}"]}}),
    ("unbalanced brace in path",
     {**_base(), "paths": {"/pets/{petId": _base()["paths"]["/pets/{petId}"]}}),
    ("x- key in paths", _mut("paths/x-note", {"a": 1})),
    ("x- key in responses", _mut(f"{PET}/get/responses/x-note", "a")),
    ("path item $ref", _mut("paths/~1other", {"$ref": "#/paths/~1pets~1{petId}"})),
    ("external $ref", _mut(f"{SCHEMAS}/Pet/properties/owner", {"$ref": "other.yaml#/X"})),
    ("a date value", _mut(f"{SCHEMAS}/Pet/properties/name/example", __import__("datetime").date(2020, 1, 1))),
    ("items missing for array (3.0)", _mut(f"{SCHEMAS}/Named/type", "array")),
    ("minimum a string", _mut(f"{PET}/parameters/0/schema/minimum", "1")),
    ("response without description", _mut(f"{PET}/post/responses/204", {})),
    ("security scheme wrong", _mut("components/securitySchemes", {"a": {"type": "magic"}})),
    ("server url missing", _mut("servers", [{"description": "x"}])),
    ("openapi 3.0 with webhooks", _mut("webhooks", {})),
    ("content-typed parameter", _mut(f"{PET}/get/parameters/0", {
        "name": "limit", "in": "query", "content": {"application/json": {"schema": {"type": "object"}}}})),
]  # fmt: skip


def _exact(doc: dict[str, Any], uri: str = "") -> tuple[str, ...]:
    """openapi-spec-validator's verdict: its first three messages, or the exception it raised."""
    dialect = doc["openapi"][:3]
    try:
        errors = []
        for error in _spec_validator(dialect)(doc, base_uri=uri).iter_errors():
            errors.append(str(getattr(error, "message", error)))
            if len(errors) >= 3:
                break
        return tuple(errors)
    except Exception as exc:
        return (f"raised {type(exc).__name__}",)


def _load(doc: dict[str, Any], tmp: Path, fast: bool) -> str:
    """What a policy load says of the document: "ok" or the refusal's text."""
    (tmp / "api.json").write_text(json.dumps(doc, default=str))
    _openapi_check.FAST_CHECK = fast
    try:
        OpenApiLoader(tmp, 1 << 26).document(tmp / "api.json")
        return "ok"
    except OpenApiProblem as exc:
        return str(exc)
    finally:
        _openapi_check.FAST_CHECK = True


@pytest.mark.parametrize(("name", "doc"), CORPUS, ids=[n for n, _ in CORPUS])
def test_the_fast_check_never_accepts_what_the_validator_refuses(
    name: str, doc: dict[str, Any]
) -> None:
    exact = _exact(doc)
    fast = _openapi_check.accepts(doc, doc["openapi"][:3])
    if exact:
        assert not fast, f"{name}: the validator refuses ({exact}) but the fast check accepts"
    if name.startswith("valid"):
        assert exact == () and fast, name


def test_the_corpus_holds_refusals_of_every_kind() -> None:
    """The corpus is worth something only if the validator refuses most of it."""
    refused = [n for n, d in CORPUS if _exact(d)]
    assert len(refused) >= 40, refused
    kinds = " ".join(msg for _, d in CORPUS for msg in _exact(d))
    for marker in ("Duplicate parameter", "is not unique", "was not resolved",
                   "Required list has not defined properties", "is not valid under any",
                   "Duplicate tag name", "is not a 'regex'"):  # fmt: skip
        assert marker in kinds, marker


@pytest.mark.parametrize(("name", "doc"), CORPUS, ids=[n for n, _ in CORPUS])
def test_a_load_refuses_with_the_same_words_either_way(
    name: str, doc: dict[str, Any], tmp_path: Path
) -> None:
    if name == "a date value":
        pytest.skip("JSON cannot carry a date: the file would differ from the document")
    assert _load(doc, tmp_path, fast=True) == _load(doc, tmp_path, fast=False)


def test_shipped_test_documents_are_accepted_both_ways(tmp_path: Path) -> None:
    loader = OpenApiLoader(DATA, 1 << 26)
    for name in ("shop30.yaml", "store31.json"):
        doc, _ = loader.document(DATA / name)  # raises if refused
        assert _exact(doc, (DATA / name).as_uri()) == ()
    store, _ = loader.document(DATA / "store31.json")
    assert _openapi_check.accepts(store, "3.1")  # one file, 3.1: the fast way


@pytest.mark.parametrize(
    "doc",
    [stripe_like(7, operations=120, schemas=120), github_like(7, operations=150, schemas=120)],
    ids=["stripe-like", "github-like"],
)
def test_the_generated_descriptions_take_the_fast_way(doc: dict[str, Any]) -> None:
    assert _exact(doc) == ()
    assert _openapi_check.accepts(doc, doc["openapi"][:3])


def _nodes(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _nodes(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _nodes(v, (*at, i))
    return out


_BASES = [_base(), _base("3.1.0")]
_VALUES = st.sampled_from(
    [None, True, False, 0, -1, 1.0, 2.5, "", "x", "(", "#/components/schemas/Pet", "string",
     "integer", "path", "query", [], ["name"], ["a", "a"], {}, {"type": "string"},
     {"$ref": "#/components/schemas/Named"}, {"$ref": "#/nowhere"}, {"type": "bogus"}]
)  # fmt: skip


@settings(
    max_examples=250,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.integers(0, 1), st.integers(0, 10_000), _VALUES, st.booleans())
def test_random_mutations_never_split_the_verdict(
    which: int, pick: int, value: Any, delete: bool
) -> None:
    doc = copy.deepcopy(_BASES[which])
    places = [at for at in _nodes(doc)[1:] if at[0] != "openapi"]
    at = places[pick % len(places)]
    node: Any = doc
    for p in at[:-1]:
        node = node[p]
    if delete and isinstance(node, dict):
        del node[at[-1]]
    else:
        node[at[-1]] = value
    if _openapi_check.accepts(doc, doc["openapi"][:3]):
        assert _exact(doc) == (), (at, value)


def test_the_validator_keeps_no_document_after_a_load(tmp_path: Path) -> None:
    """openapi-spec-validator's ``iter_errors`` cache held every document it validated."""
    from openapi_spec_validator.validation.validators import SpecValidator

    _load(_mut("info", _DELETE), tmp_path, fast=True)  # refused: the validator ran
    cache = SpecValidator.iter_errors.__wrapped__  # type: ignore[attr-defined]
    assert cache.cache_info().currsize == 0


def test_the_schemas_read_from_files_are_the_libraries_own() -> None:
    """``_Checks`` reads them without importing the libraries; they must be the same."""
    from jsonschema import Draft4Validator
    from openapi_schema_validator import OAS30Validator, OAS31Validator
    from openapi_schema_validator._specifications import REGISTRY
    from openapi_spec_validator.schemas import schema_v30, schema_v31

    assert _openapi_check._package_json(
        "openapi_spec_validator", "resources/schemas/v3.0/schema.json"
    ) == dict(schema_v30)
    assert _openapi_check._package_json(
        "openapi_spec_validator", "resources/schemas/v3.1/schema.json"
    ) == dict(schema_v31)
    assert dict(OAS30Validator.META_SCHEMA) == dict(Draft4Validator.META_SCHEMA)
    shipped = {s["$id"]: s for s in _openapi_check._oas31_metaschemas()}
    assert shipped[OAS31Validator.META_SCHEMA["$id"]] == dict(OAS31Validator.META_SCHEMA)
    for uri, contents in shipped.items():
        assert REGISTRY.contents(uri) == contents
