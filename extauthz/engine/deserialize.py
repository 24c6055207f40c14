"""Request values as an API description serializes them: strings in, typed JSON values out.

Forms, query strings, headers, cookies and path segments carry strings; the schema says
which are integers, booleans, arrays or objects. ``shape_of`` reads a (bundled, local-``$ref``)
schema once at load into a ``Shape``: at each place, which scalar types a string may be
coerced to, whether an array or an object may stand there, and the shapes below it (the
union over ``allOf``/``anyOf``/``oneOf`` branches and type lists). Per request:

- ``coerce``: a string leaf becomes the first of integer, number, boolean that both parses
  and the schema allows there, else it stays a string (the schema's own error then names it);
- ``build``: (key, value) pairs, as a form body or a query string gives them, become one
  object. Bracketed keys are the convention Stripe, Rails and PHP use: ``a[b]=1`` is
  ``{"a": {"b": 1}}``, ``a[0][b]=1`` is an array element when the schema has an array there
  (indices in order, compacted), ``a[]=1`` appends. A key the schema declares literally
  (``filter[name]``) is taken as it is. A repeated key is an array where the schema has one,
  otherwise a duplicate (refused: the first or the last wins depending on the framework, so
  what we check may not be what the upstream uses). ``a[][b]`` (PHP and Rails read it
  differently), a key sent both as a value and with brackets, and ``a[]`` mixed with
  ``a[0]`` are refused for the same reason. Each problem is a message; the caller makes the
  hit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_INT = re.compile(r"-?[0-9]{1,300}\Z", re.ASCII)
_NUMBER = re.compile(r"-?[0-9]{1,300}(\.[0-9]{1,300})?([eE][-+]?[0-9]{1,4})?\Z", re.ASCII)
_INDEX = re.compile(r"[0-9]{1,9}\Z", re.ASCII)
_ORDER = ("integer", "number", "boolean")
MAX_KEY_DEPTH = 32  # bracket levels in one key
MAX_SHOWN = 60
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated", "$comment"})
SEPARATORS = {"form": ",", "simple": ",", "spaceDelimited": " ", "pipeDelimited": "|"}


@dataclass(slots=True, eq=False)
class Shape:
    """What may stand at one place of a schema (see the module docstring)."""

    scalars: tuple[str, ...] = ()  # coercions to try on a string, in ``_ORDER``
    string: bool = True  # a string is acceptable as it is (or the schema does not say)
    array: bool = False
    object: bool = False
    items: Shape | None = None
    props: dict[str, Shape] = field(default_factory=dict)
    extra: Shape | None = None  # shape of undeclared keys (additional/pattern properties)
    binary: bool = False  # format: binary (a file; need not be text)

    def child(self, key: str) -> Shape:
        found = self.props.get(key)
        if found is not None:
            return found
        return self.extra if self.extra is not None else ANY

    @property
    def array_only(self) -> bool:
        return self.array and not self.string and not self.scalars and not self.object

    @property
    def object_only(self) -> bool:
        return self.object and not self.string and not self.scalars and not self.array


ANY = Shape(string=True, array=True, object=True)
ANY.items = ANY
ANY.extra = ANY


def shape_of(schema: Any, root: Any = None) -> Shape:
    """The ``Shape`` of a checked, bundled schema (local ``$ref``s into ``root``)."""
    top = schema if root is None else root
    return _shape(schema, top if isinstance(top, Mapping) else {}, 0, {})


def resolve_pointer(ref: str, root: Mapping[str, Any]) -> Any:
    """The node a local ``$ref`` (``#/a/b/0``, JSON Pointer escapes) names in ``root``, or None."""
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


def _shape(schema: Any, root: Mapping[str, Any], depth: int, refs: dict[str, Shape]) -> Shape:
    if schema is True or not isinstance(schema, Mapping) or depth > 48:
        return ANY
    parts: list[Shape] = []
    own = Shape(string=False)
    typed = False
    ref = schema.get("$ref")
    if isinstance(ref, str):
        known = refs.get(ref)
        if known is None:
            # filled in place once built, so a recursive schema's shape is a cycle
            refs[ref] = known = Shape()
            found = _shape(resolve_pointer(ref, root), root, depth + 1, refs)
            for name in Shape.__slots__:
                setattr(known, name, getattr(found, name))
        if not schema.keys() - _ANNOTATIONS - {"$ref"}:
            return known  # the shape itself (a merge would copy it before a cycle is filled)
        parts.append(known)
        typed = True
    branches = [b for key in ("anyOf", "oneOf") for b in schema.get(key) or ()]
    if branches:
        parts.append(_merge([_shape(b, root, depth + 1, refs) for b in branches]))
        typed = True
    kinds = schema.get("type")
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, list):
        kinds = None
        values = schema.get("enum") if isinstance(schema.get("enum"), list) else None
        if "const" in schema:
            values = [schema["const"]]
        if values is not None:  # no type: the enum's values say which
            kinds = sorted({_json_type(v) for v in values})
    if kinds is not None:
        typed = True
        own.string = "string" in kinds
        own.scalars = tuple(k for k in _ORDER if k in kinds)
        own.array = "array" in kinds
        own.object = "object" in kinds
    props = schema.get("properties")
    if isinstance(props, Mapping):
        own.props = {k: _shape(v, root, depth + 1, refs) for k, v in props.items()}
        if kinds is None:
            own.object = typed = True
    extra: list[Shape] = []
    for key in ("additionalProperties", "unevaluatedProperties"):
        sub = schema.get(key)
        if sub is not None and sub is not False:
            extra.append(_shape(sub, root, depth + 1, refs))
    for sub in (schema.get("patternProperties") or {}).values():
        extra.append(_shape(sub, root, depth + 1, refs))
    if extra:
        own.extra = _merge(extra)
    elif own.object and not own.props and schema.get("additionalProperties") is not False:
        own.extra = ANY  # an object of any keys
    items = [schema[k] for k in ("items", "contains") if isinstance(schema.get(k), Mapping)]
    items += [s for s in schema.get("prefixItems") or () if isinstance(s, Mapping)]
    if items:
        own.items = _merge([_shape(s, root, depth + 1, refs) for s in items])
        if kinds is None:
            own.array = typed = True
    own.binary = schema.get("format") == "binary" or "contentEncoding" in schema
    if not typed:
        own = Shape(string=True, array=True, object=True, items=own.items or ANY,
                    props=own.props, extra=own.extra, binary=own.binary)  # fmt: skip
    for sub in schema.get("allOf") or ():
        parts.append(_shape(sub, root, depth + 1, refs))
    if not parts:
        return own
    # ``allOf`` narrows and ``anyOf`` widens; for coercion, what any part allows is tried
    return _merge([own, *parts]) if typed else _merge(parts)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _merge(shapes: list[Shape]) -> Shape:
    if len(shapes) == 1:
        return shapes[0]
    if any(s is ANY for s in shapes):
        return ANY
    out = Shape(string=False)
    kinds: set[str] = set()
    items: list[Shape] = []
    extra: list[Shape] = []
    for s in shapes:
        kinds.update(s.scalars)
        out.string = out.string or s.string
        out.array = out.array or s.array
        out.object = out.object or s.object
        out.binary = out.binary or s.binary
        if s.items is not None:
            items.append(s.items)
        if s.extra is not None:
            extra.append(s.extra)
        for k, v in s.props.items():
            out.props[k] = _merge([out.props[k], v]) if k in out.props else v
    out.scalars = tuple(k for k in _ORDER if k in kinds)
    out.items = _merge(items) if items else None
    out.extra = _merge(extra) if extra else None
    return out


def coerce_scalar(raw: str, shape: Shape) -> Any:
    """``raw`` as the first scalar type the shape allows that parses, else ``raw``."""
    for kind in shape.scalars:
        if kind == "integer":
            if _INT.match(raw):
                return int(raw)
        elif kind == "number":
            if _NUMBER.match(raw):
                return float(raw) if ("." in raw or "e" in raw or "E" in raw) else int(raw)
        elif raw == "true" or raw == "false":
            return raw == "true"
    return raw


def split_items(raw: str, shape: Shape, separator: str) -> list[Any]:
    """A delimited array (``a,b,c``); items coerced to the items' shape."""
    if raw == "":
        return []
    item = shape.items if shape.items is not None else ANY
    return [coerce(v, item) for v in raw.split(separator)]


def split_object(raw: str, shape: Shape, separator: str, problems: list[str], where: str) -> Any:
    """A delimited object (``R,100,G,200``)."""
    if raw == "":
        return {}
    bits = raw.split(separator)
    if len(bits) % 2:
        problems.append(f"{where}: {shown(raw)} is not a list of key{separator}value pairs")
        return raw
    return {k: coerce(v, shape.child(k)) for k, v in zip(bits[::2], bits[1::2], strict=True)}


def coerce(raw: str, shape: Shape) -> Any:
    """One string where ``shape`` stands: a scalar, or a one-item array if only that fits."""
    if shape.array_only:
        return [coerce_scalar(raw, shape.items if shape.items is not None else ANY)]
    return coerce_scalar(raw, shape)


def shown(value: str) -> str:
    return repr(value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "...")


# --- bracketed keys -------------------------------------------------------------------


class Typed:
    """A value already typed (a JSON part of a multipart body): ``build`` keeps it as is."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _typed(raw: Any, shape: Shape) -> Any:
    return coerce_scalar(raw, shape) if isinstance(raw, str) else raw.value


class _Leaf:
    __slots__ = ("values",)

    def __init__(self, value: str | Typed) -> None:
        self.values = [value]


class _Indexed(dict[int, Any]):
    """``a[0]``, ``a[1]``: an array by index (compacted in index order when finished)."""


class _Appended(list[Any]):
    """``a[]``: an array by appending."""


def parse_key(key: str) -> list[str] | None:
    """``a[b][0][]`` as ``["a", "b", "0", ""]``; None when the key has no (clean) brackets."""
    base, sep, rest = key.partition("[")
    if not sep or not base or rest[-1:] != "]":
        return None
    segs = rest[:-1].split("][")
    for seg in segs:
        if "[" in seg or "]" in seg:
            return None
    return [base, *segs]


@dataclass(frozen=True, slots=True)
class Encoding:
    """How a top-level property is serialized (OpenAPI ``style``/``explode``)."""

    style: str = "form"
    explode: bool = True


FORM = Encoding()


def build(
    pairs: Iterable[tuple[str, str | Typed]],
    shape: Shape,
    encodings: Mapping[str, Encoding] | None = None,
    where: str = "body",
) -> tuple[dict[str, Any], list[str]]:
    """(the object the pairs make, problems); see the module docstring."""
    root: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in pairs:
        if "[" not in key:  # the usual field: no brackets to read
            known = root.get(key)
            if known is None:
                root[key] = _Leaf(value)
                continue
            if isinstance(known, _Leaf):
                known.values.append(value)
                continue
        segs = None if key in shape.props else parse_key(key)
        if segs is None:
            segs = [key]
        elif len(segs) > MAX_KEY_DEPTH:
            problems.append(f"{where}: key {shown(key)} nests deeper than {MAX_KEY_DEPTH}")
            continue
        error = _insert(root, segs, value, shape)
        if error is not None:
            problems.append(f"{where}: key {shown(key)}: {error}")
            if len(problems) >= 10:
                break
    out: dict[str, Any] = {}
    for key, node in root.items():
        enc = encodings.get(key, FORM) if encodings else FORM
        out[key] = _finish(node, shape.child(key), f"{where}.{key}", problems, enc)
    return out, problems


def _container(next_seg: str, shape: Shape) -> Any:
    if next_seg == "":
        return _Appended()
    if _INDEX.match(next_seg) and shape.array and (not shape.object or shape.items is not ANY):
        return _Indexed()
    return {}


def _insert(root: dict[str, Any], segs: list[str], value: str | Typed, shape: Shape) -> str | None:
    node: Any = root
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        if isinstance(node, _Appended):
            if not last:
                return "'[]' followed by more brackets is read differently by PHP and Rails"
            node.append(_Leaf(value))
            return None
        if isinstance(node, _Indexed):
            if not _INDEX.match(seg):
                return f"{shown(seg)} is not an array index"
            slot: Any = int(seg)
        elif seg == "":
            return "'[]' where an object is"
        else:
            slot = seg
        child_shape = shape.items if isinstance(node, _Indexed) else shape.child(seg)
        child_shape = child_shape if child_shape is not None else ANY
        existing = node.get(slot)
        if last:
            if existing is None:
                node[slot] = _Leaf(value)
            elif isinstance(existing, _Leaf):
                existing.values.append(value)
            else:
                return "sent both as a value and with brackets"
            return None
        wanted = _container(segs[i + 1], child_shape)
        if existing is None:
            node[slot] = existing = wanted
        elif isinstance(existing, _Leaf):
            return "sent both as a value and with brackets"
        elif type(existing) is not type(wanted) and not (
            type(existing) is dict and type(wanted) is _Indexed
        ):
            return "mixes '[]' with indexed or named keys"
        node = existing
        shape = child_shape
    return None


def _finish(node: Any, shape: Shape, where: str, problems: list[str], enc: Encoding) -> Any:
    if isinstance(node, _Leaf):
        values = node.values
        if len(values) == 1:
            raw = values[0]
            if not isinstance(raw, str):
                return raw.value
            if enc.style in SEPARATORS and not (enc.style == "form" and enc.explode):
                sep = SEPARATORS[enc.style]
                if shape.array and not shape.string and not shape.scalars:
                    return split_items(raw, shape, sep)
                if shape.object_only:
                    return split_object(raw, shape, sep, problems, where)
            return coerce(raw, shape)
        if shape.array:
            item = shape.items if shape.items is not None else ANY
            return [_typed(v, item) for v in values]
        problems.append(
            f"{where} is sent {len(values)} times and its schema is not an array "
            "(frameworks differ on which one wins)"
        )
        return _typed(values[-1], shape)
    item = shape.items if shape.items is not None else ANY
    if isinstance(node, _Appended):
        return [_finish(v, item, f"{where}[]", problems, FORM) for v in node]
    if isinstance(node, _Indexed):
        return [_finish(node[k], item, f"{where}[{k}]", problems, FORM) for k in sorted(node)]
    return {k: _finish(v, shape.child(k), f"{where}.{k}", problems, FORM) for k, v in node.items()}
