"""Validating an OpenAPI document: openapi-spec-validator's verdict, in a tenth of its time.

``openapi-spec-validator`` decides whether a document is valid and words every refusal; on
Stripe's 4 MB description it takes ~4 s of CPU (half checking the document against the OAS
JSON Schema with ``jsonschema``, half walking it through ``jsonschema-path``), and its
``iter_errors`` keeps every document it ever validated in an unbounded ``lru_cache``.

``accepts(doc, dialect)`` is a cheaper test that is at least as strict: when it says yes, the
validator would have found nothing; when it says no, or meets anything it does not model, the
caller runs the validator itself, whose errors (and only those) refuse the document. So a
document is accepted or refused exactly as before, in the same words. It does what the
validator does, on plain dicts:

- the document against the same OAS 3.0/3.1 JSON Schema, with ``jsonschema-rs`` (the
  validator checks no formats there, and neither does this);
- the validator's walk (``openapi_spec_validator.validation.keywords``): duplicate tag names,
  duplicate parameters, duplicate ``operationId``s, path parameters declared and used both
  ways, every schema under ``components/schemas``, a parameter or a response checked against
  its dialect's metaschema (``jsonschema-rs``, plus the ``regex`` format the validator asserts
  on ``pattern`` with its own function), ``allOf`` ``required`` names no branch defines, and
  ``default`` values checked by the validator's own value validator. Where the validator
  skips a check (a schema visited before) this checks anyway; that is only stricter.

It says no at once on a ``$ref`` to another file, a ``$schema`` or ``jsonSchemaDialect``
other than the default, a ``$ref`` inside a schema with a ``default``,
a value JSON cannot hold (a YAML date), a cycle among ``allOf`` branches: the validator
answers for those. ``tests/policy/test_openapi_check.py`` pins refusals and acceptances
against the validator over a corpus of broken documents and the large generated ones.
"""

from __future__ import annotations

import importlib.util
import json
import re
import string
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

# The seam: False always runs openapi-spec-validator itself (the tests compare both ways).
FAST_CHECK = True

_OPERATIONS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class _No(Exception):
    """The fast check cannot vouch for the document."""


def accepts(doc: Any, dialect: str) -> bool:
    """True only if openapi-spec-validator finds no error in ``doc`` (see the docstring)."""
    if not FAST_CHECK:
        return False
    try:
        checks = _checks(dialect)
        if checks is None or not checks.document.is_valid(doc):
            return False
        _Walk(doc, dialect, checks).run()
    except (_No, ValueError, TypeError, KeyError, RecursionError, OverflowError):
        return False  # ValueError: jsonschema-rs meets a value JSON cannot hold
    return True


class _Checks:
    """The compiled JSON Schema validators one dialect needs (built once per process).

    The schemas are read from the two libraries' files without importing them (their
    imports, pydantic's included, cost ~0.2 s of a start-up); a test pins that they are the
    very schemas the libraries use.
    """

    def __init__(self, dialect: str) -> None:
        import jsonschema_rs
        from jsonschema import Draft4Validator

        version = "3.0" if dialect == "3.0" else "3.1"
        document = _package_json(
            "openapi_spec_validator", f"resources/schemas/v{version}/schema.json"
        )
        self.dialect = dialect
        self.document = jsonschema_rs.validator_for(document, validate_formats=False)
        if dialect == "3.0":
            self.meta = jsonschema_rs.Draft4Validator(
                dict(Draft4Validator.META_SCHEMA), validate_formats=False
            )
        else:
            resources = [(r["$id"], r) for r in _oas31_metaschemas()]
            base = next(r for uri, r in resources if uri.endswith("/dialect/base"))
            self.meta = jsonschema_rs.Draft202012Validator(
                base, validate_formats=False, registry=jsonschema_rs.Registry(resources)
            )

    def value_validator(self, schema: Mapping[str, Any]) -> Any:
        """openapi-spec-validator's validator of a ``default`` (imported when one is met)."""
        from openapi_schema_validator import (
            OAS30Validator,
            OAS31Validator,
            oas30_format_checker,
            oas31_format_checker,
        )

        if self.dialect == "3.0":
            return OAS30Validator(schema, format_checker=oas30_format_checker)
        return OAS31Validator(schema, format_checker=oas31_format_checker)


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds it without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(package)
    return Path(next(iter(spec.submodule_search_locations)))


def _package_json(package: str, relative: str) -> Any:
    return json.loads((_package_dir(package) / relative).read_text(encoding="utf-8"))


def _oas31_metaschemas() -> list[Any]:
    """OAS 3.1's dialect and vocabulary metaschemas, as openapi-schema-validator ships them."""
    root = _package_dir("openapi_schema_validator") / "schemas" / "oas3.1"
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [json.loads(p.read_text(encoding="utf-8")) for p in files]  # "vocabularies/base" too


@lru_cache(maxsize=2)
def _checks(dialect: str) -> _Checks | None:
    try:
        return _Checks(dialect)
    except Exception:  # jsonschema-rs missing or unable to build: the validator decides
        return None


def _is_regex(pattern: str) -> bool:
    """openapi-schema-validator's ``regex`` format: ``re`` unless ``regress`` is installed."""
    if _REGRESS:
        from openapi_schema_validator._format import is_regex

        return bool(is_regex(pattern))
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


_REGRESS = importlib.util.find_spec("regress") is not None


class _Walk:
    """openapi-spec-validator's keyword walk on plain dicts; raises ``_No`` on anything."""

    def __init__(self, doc: Mapping[str, Any], dialect: str, checks: _Checks) -> None:
        self.doc = doc
        self.dialect = dialect
        self.checks = checks
        self.visited: set[int] = set()
        self.meta_checked: set[int] = set()
        self.operation_ids: set[str] = set()

    def run(self) -> None:
        doc = self.doc
        if not isinstance(doc, Mapping) or "jsonSchemaDialect" in doc:
            raise _No
        if "tags" in doc:
            names = [self.get(tag, "name") for tag in self.items(doc["tags"])]
            if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
                raise _No
        if "paths" in doc:
            for url, item in self.mapping(doc["paths"]).items():
                self.path(url, self.mapping(item))
        if "components" in doc:
            components = self.mapping(doc["components"])
            if "schemas" in components:
                for schema in self.mapping(components["schemas"]).values():
                    self.schema(schema, top=True)

    # -- the document's nodes, with ``$ref`` followed as jsonschema-path follows it ----------
    def resolve(self, node: Any) -> Any:
        for _ in range(64):
            if not isinstance(node, Mapping) or "$ref" not in node:
                return node
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise _No  # another file, or no reference at all: the validator decides
            node = self.doc
            for part in ref[1:].split("/")[1:] if ref != "#" else []:
                part = unquote(part).replace("~1", "/").replace("~0", "~")
                if isinstance(node, Mapping) and part in node:
                    node = node[part]
                elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                else:
                    raise _No
        raise _No

    def mapping(self, node: Any) -> Mapping[str, Any]:
        value = self.resolve(node)
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise _No
        return value

    def items(self, node: Any) -> Iterator[Mapping[str, Any]]:
        value = self.resolve(node)
        if not isinstance(value, list):
            raise _No
        for item in value:
            yield self.mapping(item)

    def get(self, node: Mapping[str, Any], key: str) -> Any:
        if key not in node:
            raise _No
        return self.resolve(node[key])

    # -- paths, operations, parameters --------------------------------------------------------
    def path(self, url: str, item: Mapping[str, Any]) -> None:
        shared: list[Mapping[str, Any]] | None = None
        if "parameters" in item:
            shared = list(self.items(item["parameters"]))
            self.parameters(shared)
        for name, op in item.items():
            if name in _OPERATIONS:
                self.operation(url, self.mapping(op), shared)

    def parameters(self, params: list[Mapping[str, Any]]) -> None:
        seen: set[tuple[Any, Any]] = set()
        for p in params:
            if "schema" in p:
                self.schema(p["schema"], top=True)
            key = (self.get(p, "name"), self.get(p, "in"))
            if not all(isinstance(k, str) for k in key) or key in seen:
                raise _No
            seen.add(key)

    def operation(
        self, url: str, op: Mapping[str, Any], shared: list[Mapping[str, Any]] | None
    ) -> None:
        if "operationId" in op:
            op_id = self.resolve(op["operationId"])
            if op_id is not None:
                if not isinstance(op_id, str) or op_id in self.operation_ids:
                    raise _No
                self.operation_ids.add(op_id)
        if "responses" in op:
            for response in self.mapping(op["responses"]).values():
                response = self.mapping(response)
                if "content" in response:
                    for media in self.mapping(response["content"]).values():
                        media = self.mapping(media)
                        if "schema" in media:
                            self.schema(media["schema"], top=True)
        names: list[Any] = []
        if "parameters" in op:
            own = list(self.items(op["parameters"]))
            self.parameters(own)
            names += [self.get(p, "name") for p in own if self.get(p, "in") == "path"]
        if shared is not None:
            names += [self.get(p, "name") for p in shared if self.get(p, "in") == "path"]
        in_url = {field for _, field, _, _ in string.Formatter().parse(url) if field}
        if in_url != set(names):
            raise _No

    # -- schemas --------------------------------------------------------------------------------
    def schema(self, node: Any, *, top: bool) -> None:
        value = self.resolve(node)
        if isinstance(value, bool):  # the validator checks it against the metaschema, no more
            if top and not self.checks.meta.is_valid(value):
                raise _No
            return
        if not isinstance(value, Mapping):
            raise _No
        if top and id(value) not in self.meta_checked:
            self.meta_checked.add(id(value))
            if "$schema" in value or not self.checks.meta.is_valid(value):
                raise _No
            if not all(_is_regex(p) for p in _patterns(value)):
                raise _No
        if id(value) in self.visited:
            return
        self.visited.add(id(value))
        nested: set[str] = set()
        if "allOf" in value:
            for inner in self.list(value["allOf"]):
                self.schema(inner, top=False)
                nested |= self.properties(inner, ())
        for key in ("anyOf", "oneOf"):
            if key in value:
                for inner in self.list(value[key]):
                    self.schema(inner, top=False)
        for key in ("not", "items"):
            if key in value:
                self.schema(value[key], top=False)
        props: Mapping[str, Any] = {}
        if "properties" in value:
            props = self.mapping(value["properties"])
            for sub in props.values():
                self.schema(sub, top=False)
        if "allOf" in value:  # the validator asks only at the top; asking everywhere is stricter
            required = self.resolve(value["required"]) if "required" in value else []
            if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
                raise _No
            if set(required) - set(props) - nested:
                raise _No
        if "default" in value:
            default = self.resolve(value["default"])
            nullable = self.resolve(value["nullable"]) if "nullable" in value else False
            if default is not None or nullable is not True:
                self.default(value, default)

    def list(self, node: Any) -> list[Any]:
        value = self.resolve(node)
        if not isinstance(value, list):
            raise _No
        return value

    def properties(self, node: Any, path: tuple[int, ...]) -> set[str]:
        """``SchemaValidator._collect_properties``; a cycle (it would recurse forever): _No."""
        value = self.resolve(node)
        if not isinstance(value, Mapping) or id(value) in path:
            raise _No
        here = (*path, id(value))
        found: set[str] = set()
        if "properties" in value:
            found |= set(self.mapping(value["properties"]))
        for key in ("allOf", "anyOf", "oneOf"):
            if key in value:
                for sub in self.list(value[key]):
                    found |= self.properties(sub, here)
        for key in ("items", "not"):
            if key in value:
                found |= self.properties(value[key], here)
        return found

    def default(self, schema: Mapping[str, Any], value: Any) -> None:
        if _has_ref(schema):
            raise _No  # the validator resolves it in the document; let it
        validator = self.checks.value_validator(schema)
        if next(iter(validator.iter_errors(value)), None) is not None:
            raise _No


def _walk_dicts(node: Any) -> Iterator[Mapping[str, Any]]:
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Mapping):
            yield n
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)


def _patterns(schema: Mapping[str, Any]) -> Iterator[str]:
    """Every ``pattern`` value and ``patternProperties`` key anywhere in ``schema`` (a
    superset of where the metaschema asks for the ``regex`` format)."""
    for d in _walk_dicts(schema):
        pattern = d.get("pattern")
        if isinstance(pattern, str):
            yield pattern
        pp = d.get("patternProperties")
        if isinstance(pp, Mapping):
            yield from (k for k in pp if isinstance(k, str))


def _has_ref(schema: Mapping[str, Any]) -> bool:
    return any("$ref" in d for d in _walk_dicts(schema))
