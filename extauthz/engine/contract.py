"""Request contracts: JSON Schema 2020-12 validation and ``rejectUnknownFields``.

Validators are compiled once at load. ``fastjsonschema`` generates Python code and is several
times faster than ``jsonschema``'s cached validators on small bodies (see ``bench/engine.py``),
but it implements drafts 4-7 only; a schema is handed to it only when every keyword it uses
means the same in draft 7 and 2020-12, otherwise a cached ``jsonschema`` Draft 2020-12
validator is used. Formats are asserted by both (a security contract wants ``format: uri``
to mean something).

``rejectUnknownFields`` walks the body beside a tree of the properties the schema declares
(following local ``$ref``s and ``allOf``/``anyOf``/``oneOf``/``if``/``then``/``else``): a
key that no branch declares is unknown. An object schema that declares no properties, or that
allows ``additionalProperties``/``patternProperties``, is free-form at that level.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fastjsonschema
import jsonschema
from jsonschema import Draft202012Validator, FormatChecker

from ..decision import RuleHit
from .regex_risk import pattern_risk

SCHEMA_INVALID = "contract.schema.invalid"
UNKNOWN_FIELD = "contract.unknownField"

_DRAFT7_SAFE = frozenset(
    {
        "$schema", "$id", "$comment", "$defs", "definitions", "$ref", "title", "description",
        "default", "examples", "readOnly", "writeOnly", "deprecated", "contentMediaType",
        "contentEncoding", "type", "enum", "const", "properties", "required",
        "additionalProperties", "patternProperties", "propertyNames", "minProperties",
        "maxProperties", "items", "contains", "minItems", "maxItems", "uniqueItems",
        "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "allOf", "anyOf", "oneOf", "not",
        "if", "then", "else",
    }
)  # fmt: skip
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_ONE = (
    "items", "additionalProperties", "contains", "not", "if", "then", "else", "propertyNames",
    "additionalItems", "unevaluatedProperties", "unevaluatedItems",
)  # fmt: skip
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "$defs", "definitions", "title", "description", "default",
     "examples", "readOnly", "writeOnly", "deprecated"}
)  # fmt: skip


class SchemaProblem(ValueError):
    """A schema that cannot be used: invalid, remote ``$ref``, ..."""


def subschemas(schema: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    for key in _SCHEMA_MAPS:
        value = schema.get(key)
        if isinstance(value, Mapping):
            out.extend(value.values())
    for key in _SCHEMA_ONE:
        value = schema.get(key)
        if isinstance(value, Mapping):
            out.append(value)
        elif key == "items" and isinstance(value, list):
            out.extend(value)
    for key in _SCHEMA_LISTS:
        value = schema.get(key)
        if isinstance(value, list):
            out.extend(value)
    return out


def _iter_schemas(schema: Any) -> list[Mapping[str, Any]]:
    found: list[Mapping[str, Any]] = []
    stack = [schema]
    while stack:
        s = stack.pop()
        if isinstance(s, Mapping):
            found.append(s)
            stack.extend(subschemas(s))
    return found


def fast_compatible(schema: Any) -> bool:
    """True when fastjsonschema (draft 7) reads every keyword the way 2020-12 does."""
    for s in _iter_schemas(schema):
        keys = set(s)
        if not keys <= _DRAFT7_SAFE:
            return False
        if isinstance(s.get("items"), list):
            return False  # tuple form: prefixItems in 2020-12
        if "$ref" in s and keys - _ANNOTATIONS - {"$ref"}:
            return False  # draft 7 ignores siblings of $ref; 2020-12 applies them
        if "$id" in s and s is not schema:
            return False
    return True


def check_schema(schema: Any) -> None:
    """Raise ``SchemaProblem`` unless ``schema`` is a usable 2020-12 schema."""
    if not isinstance(schema, Mapping | bool):
        raise SchemaProblem("a JSON Schema must be an object or a boolean")
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise SchemaProblem(f"invalid JSON Schema at '/{where}': {exc.message}") from None
    for s in _iter_schemas(schema):
        ref = s.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            raise SchemaProblem(f"$ref {ref!r}: only local references ('#/...') are supported")
        if "$dynamicRef" in s:
            raise SchemaProblem("$dynamicRef is not supported")
        patterns = [s["pattern"]] if isinstance(s.get("pattern"), str) else []
        if isinstance(s.get("patternProperties"), Mapping):
            patterns.extend(k for k in s["patternProperties"] if isinstance(k, str))
        for pattern in patterns:
            risk = pattern_risk(pattern)
            if risk is not None:
                raise SchemaProblem(risk)


Validator = Callable[[Any], str | None]


def compile_validator(schema: Any, *, engine: str = "auto") -> tuple[Validator, str]:
    """Return (validate, engine name); ``validate(instance)`` gives an error text or None."""
    check_schema(schema)
    use_fast = engine == "fastjsonschema" or (engine == "auto" and fast_compatible(schema))
    if use_fast and isinstance(schema, Mapping):
        draft7 = copy.deepcopy(dict(schema))
        draft7["$schema"] = "http://json-schema.org/draft-07/schema#"
        draft7.pop("$id", None)
        try:
            fn = fastjsonschema.compile(draft7, use_default=False, use_formats=True)
        except (fastjsonschema.JsonSchemaDefinitionException, re.error, ValueError):
            fn = None
        if fn is not None:
            return _fast(fn), "fastjsonschema"
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    return _slow(validator), "jsonschema"


def _fast(fn: Callable[[Any], Any]) -> Validator:
    exc_type = fastjsonschema.JsonSchemaValueException

    def validate(instance: Any) -> str | None:
        try:
            fn(instance)
        except exc_type as exc:
            msg = exc.message
            if msg.startswith("data"):
                msg = "body" + msg[4:]
            return msg
        except (RecursionError, re.error, TypeError, ValueError) as exc:
            return f"body cannot be validated: {type(exc).__name__}"
        return None

    return validate


def _slow(validator: Draft202012Validator) -> Validator:
    def validate(instance: Any) -> str | None:
        try:
            if validator.is_valid(instance):
                return None
            err = jsonschema.exceptions.best_match(validator.iter_errors(instance))
        except (RecursionError, re.error, TypeError, ValueError) as exc:
            return f"body cannot be validated: {type(exc).__name__}"
        if err is None:
            return "body does not match the schema"
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        return f"body{where}: {err.message}"

    return validate


# --- unknown fields --------------------------------------------------------------------


@dataclass(slots=True)
class FieldTree:
    """What keys an object may carry (``open``: any) and the trees below them."""

    open: bool = False
    props: dict[str, FieldTree] = field(default_factory=dict)
    patterns: list[re.Pattern[str]] = field(default_factory=list)
    items: FieldTree | None = None
    is_object: bool = False

    def child(self, key: str) -> FieldTree | None:
        """The tree for ``key``, or None when the key is not declared."""
        if self.open:
            return self.props.get(key, OPEN)
        sub = self.props.get(key)
        if sub is not None:
            return sub
        for p in self.patterns:
            if p.search(key):
                return OPEN
        return None


OPEN = FieldTree(open=True)


def field_tree(schema: Any) -> FieldTree:
    """Build the declared-fields tree of a (checked) schema."""
    root = schema if isinstance(schema, Mapping) else {}
    return _tree(schema, root, 0, set())


def _resolve(ref: str, root: Mapping[str, Any]) -> Any:
    node: Any = root
    for part in ref.lstrip("#").split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _tree(schema: Any, root: Mapping[str, Any], depth: int, refs: set[str]) -> FieldTree:
    if not isinstance(schema, Mapping) or depth > 64:
        return OPEN
    parts: list[FieldTree] = []
    ref = schema.get("$ref")
    if isinstance(ref, str):
        if ref in refs:
            return OPEN  # recursive schema: stop here, accept below
        target = _resolve(ref, root)
        parts.append(_tree(target, root, depth + 1, refs | {ref}))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or ():
            parts.append(_tree(sub, root, depth + 1, refs))
    for key in ("if", "then", "else"):
        if isinstance(schema.get(key), Mapping):
            parts.append(_tree(schema[key], root, depth + 1, refs))
    for sub in (schema.get("dependentSchemas") or {}).values():
        parts.append(_tree(sub, root, depth + 1, refs))
    own = FieldTree()
    props = schema.get("properties")
    if isinstance(props, Mapping):
        own.is_object = True
        for name, sub in props.items():
            own.props[name] = _tree(sub, root, depth + 1, refs)
    for pattern in schema.get("patternProperties") or {}:
        own.is_object = True
        own.patterns.append(re.compile(pattern))
    extra = schema.get("additionalProperties", schema.get("unevaluatedProperties"))
    if extra is not None and extra is not False:
        own.open = True
        own.is_object = True
    if extra is False:
        own.is_object = True
    items = schema.get("items")
    prefix = schema.get("prefixItems")
    item_trees: list[FieldTree] = []
    if isinstance(items, Mapping):
        item_trees.append(_tree(items, root, depth + 1, refs))
    elif isinstance(items, list):
        item_trees.extend(_tree(s, root, depth + 1, refs) for s in items)
    if isinstance(prefix, list):
        item_trees.extend(_tree(s, root, depth + 1, refs) for s in prefix)
    if item_trees:
        own.items = _merge(item_trees)
    parts.append(own)
    merged = _merge(parts)
    if not merged.is_object:
        merged.open = True  # declares no properties: free-form object
    return merged


def _merge(trees: list[FieldTree]) -> FieldTree:
    if len(trees) == 1:
        return trees[0]
    out = FieldTree()
    items: list[FieldTree] = []
    for t in trees:
        if t.is_object:
            out.is_object = True
            out.open = out.open or t.open
            for name, sub in t.props.items():
                out.props[name] = _merge([out.props[name], sub]) if name in out.props else sub
            out.patterns.extend(t.patterns)
        if t.items is not None:
            items.append(t.items)
    if items:
        out.items = _merge(items)
    return out


def unknown_fields(tree: FieldTree, value: Any, limit: int = 10) -> list[str]:
    """Dotted paths of keys the schema does not declare (at most ``limit``)."""
    found: list[str] = []
    stack: list[tuple[Any, FieldTree, str]] = [(value, tree, "")]
    while stack:
        node, t, path = stack.pop()
        if type(node) is dict:
            if t.open and not t.props:
                continue
            for key, child in node.items():
                sub = t.child(key)
                dotted = f"{path}.{key}" if path else key
                if sub is None:
                    found.append(dotted)
                    if len(found) >= limit:
                        return found
                elif (type(child) is dict or type(child) is list) and sub is not OPEN:
                    stack.append((child, sub, dotted))
        elif type(node) is list and t.items is not None and t.items is not OPEN:
            for child in node:
                if type(child) is dict or type(child) is list:
                    stack.append((child, t.items, path))
    return found


@dataclass(frozen=True, slots=True)
class Contract:
    validate: Validator
    engine: str
    unknown: FieldTree | None  # None: unknown fields allowed
    schema_source: str  # file path or "<inline>", for messages

    def check(self, value: Any, hits: list[RuleHit]) -> None:
        error = self.validate(value)
        if error is not None:
            hits.append(RuleHit(SCHEMA_INVALID, "high", error[:300]))
        if self.unknown is not None:
            extra = unknown_fields(self.unknown, value)
            if extra:
                hits.append(
                    RuleHit(UNKNOWN_FIELD, "high", ("unknown field(s): " + ", ".join(extra))[:300])
                )


def compile_contract(
    schema: Any, *, reject_unknown: bool, source: str, engine: str = "auto"
) -> Contract:
    validate, used = compile_validator(schema, engine=engine)
    tree = field_tree(schema) if reject_unknown else None
    return Contract(validate, used, tree, source)
