"""Request contracts: JSON Schema 2020-12 validation and ``rejectUnknownFields``.

Validators are compiled once at load. ``fastjsonschema`` generates Python code and is several
times faster than ``jsonschema``'s cached validators on small bodies (see ``bench/engine.py``),
but it implements drafts 4-7 only; a schema is handed to it only when every keyword it uses
means the same in draft 7 and 2020-12, otherwise a cached ``jsonschema`` Draft 2020-12
validator is used. Formats are asserted by both (a security contract wants ``format: uri``
to mean something).

Schema regexes (``pattern``, ``patternProperties`` keys) come from the policy and run on
attacker input, so neither library's backtracking ``re`` runs them: each is compiled once at
load with RE2 (``schema_regex``, linear time) and swapped into fastjsonschema's generated code
(its ``REGEX_PATTERNS`` table) or into ``jsonschema``'s keyword functions. fastjsonschema's own
``email`` format regex is quadratic on long dotted input (100 KB: 3 s) and is swapped for an
RE2 equivalent too; its other format regexes are fixed, linear in practice, and left alone.

``rejectUnknownFields`` walks the body beside a tree of the properties the schema declares
(following local ``$ref``s and ``allOf``/``anyOf``/``oneOf``/``if``/``then``/``else``): a
key that no branch declares is unknown. An object schema that declares no properties, or that
allows ``additionalProperties``/``patternProperties``, is free-form at that level.
"""

from __future__ import annotations

import ast
import copy
import marshal
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import fastjsonschema
import jsonschema
from fastjsonschema.draft07 import CodeGeneratorDraft07
from fastjsonschema.ref_resolver import RefResolver
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from ..decision import RuleHit
from .checks.contract import MEDIA_TYPE, SCHEMA_INVALID, UNKNOWN_FIELD
from .decoders._base import FORM, JSON, MULTIPART, NONE, ParsedBody, Part
from .deserialize import Encoding, Shape, Typed, build, resolve_pointer, shape_of
from .metaschema import MetaschemaChecks, check_plain
from .schema_regex import LinearPattern, UnsupportedPattern, compile_pattern

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
# Where subschemas sit in a schema (also walked by ``policy._openapi``).
SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
SCHEMA_ONE = (
    "items", "additionalProperties", "contains", "not", "if", "then", "else", "propertyNames",
    "additionalItems", "unevaluatedProperties", "unevaluatedItems",
)  # fmt: skip
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "$defs", "definitions", "title", "description", "default",
     "examples", "readOnly", "writeOnly", "deprecated"}
)  # fmt: skip


class SchemaProblem(ValueError):
    """A schema that cannot be used: invalid, remote ``$ref``, ..."""


def _is_map(value: Any) -> bool:
    """``isinstance(value, Mapping)``, without the ABC machinery for the usual plain dict."""
    return type(value) is dict or (type(value) is not list and isinstance(value, Mapping))


def subschemas(schema: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    get = schema.get
    for key in SCHEMA_MAPS:
        value = get(key)
        if value is not None and _is_map(value):
            out.extend(value.values())
    for key in SCHEMA_ONE:
        value = get(key)
        if value is None:
            continue
        if _is_map(value):
            out.append(value)
        elif key == "items" and isinstance(value, list):
            out.extend(value)
    for key in SCHEMA_LISTS:
        value = get(key)
        if isinstance(value, list):
            out.extend(value)
    return out


def _iter_schemas(schema: Any) -> list[Mapping[str, Any]]:
    found: list[Mapping[str, Any]] = []
    stack = [schema]
    while stack:
        s = stack.pop()
        if _is_map(s):
            found.append(s)
            stack.extend(subschemas(s))
    return found


def fast_compatible(schema: Any, nodes: list[Mapping[str, Any]] | None = None) -> bool:
    """True when fastjsonschema (draft 7) reads every keyword the way 2020-12 does.

    ``nodes``: ``_iter_schemas(schema)``, when the caller has it already.
    """
    for s in _iter_schemas(schema) if nodes is None else nodes:
        keys = s.keys()
        if not keys <= _DRAFT7_SAFE:
            return False
        if isinstance(s.get("items"), list):
            return False  # tuple form: prefixItems in 2020-12
        if "$ref" in s and keys - _ANNOTATIONS - {"$ref"}:
            return False  # draft 7 ignores siblings of $ref; 2020-12 applies them
        if "$id" in s and s is not schema:
            return False
    return True


def check_schema(
    schema: Any, metaschema: MetaschemaChecks | None = None
) -> list[Mapping[str, Any]]:
    """Raise ``SchemaProblem`` unless ``schema`` is a usable 2020-12 schema.

    ``metaschema``: the load's shared metaschema verdicts (same result, see ``metaschema``).
    Returns the schema's (sub)schema objects, ``_iter_schemas(schema)``.
    """
    if not isinstance(schema, Mapping | bool):
        raise SchemaProblem("a JSON Schema must be an object or a boolean")
    try:
        if metaschema is None:
            check_plain(schema)
        else:
            metaschema.check(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise SchemaProblem(f"invalid JSON Schema at '/{where}': {exc.message}") from None
    nodes = _iter_schemas(schema)
    for s in nodes:
        ref = s.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            raise SchemaProblem(f"$ref {ref!r}: only local references ('#/...') are supported")
        if "$dynamicRef" in s:
            raise SchemaProblem("$dynamicRef is not supported")
    try:
        for pattern in _patterns(nodes):
            compile_pattern(pattern)
    except UnsupportedPattern:
        for pointer, pattern in schema_patterns(schema):  # the first in the usual order
            try:
                compile_pattern(pattern)
            except UnsupportedPattern as exc:
                raise SchemaProblem(f"schema regex at '{pointer}': {exc}") from None
    return nodes


def _patterns(nodes: list[Mapping[str, Any]]) -> set[str]:
    """The ``pattern``s and ``patternProperties`` keys of ``nodes`` (no pointers: cheap)."""
    found: set[str] = set()
    for s in nodes:
        pattern = s.get("pattern")
        if isinstance(pattern, str):
            found.add(pattern)
        pp = s.get("patternProperties")
        if pp is not None and _is_map(pp):
            found.update(k for k in pp if isinstance(k, str))
    return found


def _pointer(parts: tuple[str | int, ...]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def schema_patterns(schema: Any) -> list[tuple[str, str]]:
    """Every ``pattern`` and ``patternProperties`` key, with its JSON pointer in the schema."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(schema, ())]
    while stack:
        s, at = stack.pop()
        if not isinstance(s, Mapping):
            continue
        if isinstance(s.get("pattern"), str):
            found.append((_pointer((*at, "pattern")), s["pattern"]))
        for key in SCHEMA_MAPS:
            value = s.get(key)
            if isinstance(value, Mapping):
                for name, sub in value.items():
                    if key == "patternProperties" and isinstance(name, str):
                        found.append((_pointer((*at, key, name)), name))
                    stack.append((sub, (*at, key, name)))
        for key in SCHEMA_ONE:
            value = s.get(key)
            if isinstance(value, Mapping):
                stack.append((value, (*at, key)))
            elif key == "items" and isinstance(value, list):
                stack.extend((sub, (*at, key, i)) for i, sub in enumerate(value))
        for key in SCHEMA_LISTS:
            value = s.get(key)
            if isinstance(value, list):
                stack.extend((sub, (*at, key, i)) for i, sub in enumerate(value))
    return found


Validator = Callable[[Any], str | None]


def compile_validator(
    schema: Any, *, engine: str = "auto", metaschema: MetaschemaChecks | None = None
) -> tuple[Validator, str]:
    """Return (validate, engine name); ``validate(instance)`` gives an error text or None.

    ``metaschema``: the load's shared schema work; a schema met again in the same load (an
    empty form body on two hundred operations) gets the validator compiled the first time.
    """
    key = None
    if metaschema is not None and isinstance(schema, dict):
        key = (engine, repr(schema))  # equal reprs of plain JSON values: equal schemas
        known = metaschema.validators.get(key)
        if known is not None:
            return known
    nodes = check_schema(schema, metaschema)
    compiled = _compile_validator(schema, engine, nodes)
    if key is not None and metaschema is not None:
        metaschema.validators[key] = compiled
    return compiled


def _compile_validator(
    schema: Any, engine: str, nodes: list[Mapping[str, Any]]
) -> tuple[Validator, str]:
    use_fast = engine == "fastjsonschema" or (engine == "auto" and fast_compatible(schema, nodes))
    if use_fast and isinstance(schema, Mapping):
        draft7 = _private_copy(schema)
        draft7["$schema"] = "http://json-schema.org/draft-07/schema#"
        draft7.pop("$id", None)
        try:
            if LEAN_CODE:
                fn = _lean_compile(draft7)
            else:
                fn = fastjsonschema.compile(draft7, use_default=False, use_formats=True)
        except (fastjsonschema.JsonSchemaDefinitionException, re.error, ValueError):
            fn = None
        if fn is not None and _use_linear_regexes(fn, _patterns(nodes)):
            return _fast(fn), "fastjsonschema"
    validator = LinearDraft202012Validator(schema, format_checker=FormatChecker())
    return _slow(validator, schema), "jsonschema"


def _private_copy(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy fastjsonschema may write into.

    Its resolver rewrites every ``$ref`` to ``urljoin(scope, ref)``; the scope stays empty
    (the root's ``$id`` is dropped, nested ones are not fast-compatible) unless a dict below
    carries an ``id``/``$id`` string, and ``urljoin("", ref)`` is ``ref``: so without such a
    key the writes change nothing and the root's copy is enough (a deep copy of a Stripe body
    is ~1 ms).
    """
    text = repr(schema)
    if "'id'" in text or "'$id'" in text:
        return copy.deepcopy(dict(schema))
    return dict(schema)


# The seam for ``_lean_compile``: False compiles with ``fastjsonschema.compile`` as before.
LEAN_CODE = True


class _LeanDraft07(CodeGeneratorDraft07):
    """fastjsonschema's draft-07 code, each ``raise`` carrying only its message.

    By default every generated ``raise`` also carries the failing value, the rule and the
    whole sub-schema written out as a literal (``detailed_exceptions``): for a Stripe body
    that is half the generated code, and rendering it half the compile time. A contract reads
    only ``message``; fastjsonschema's own ``detailed_exceptions=False`` would also drop the
    dynamic part of two messages (which keys are missing, how many ``oneOf`` branches match),
    so this keeps the message exactly and drops the rest.
    """

    def exc(self, msg: str, *args: Any, append_to_msg: str | None = None, rule: Any = None) -> None:
        arg = '"' + msg + '"'
        if append_to_msg:
            arg += " + (" + append_to_msg + ")"
        self.l("raise JsonSchemaValueException(" + arg + ")", *args)


def _lean_compile(definition: dict[str, Any]) -> Callable[[Any], Any]:
    """``fastjsonschema.compile(definition, use_default=False)`` with ``_LeanDraft07``.

    The function keeps its module's code object (``_code``) and name (``_scope``), from which
    ``rebuild_fast`` makes it again in another process (see ``recipe``).
    """
    resolver = RefResolver.from_schema(definition, handlers={}, store={})
    generator = _LeanDraft07(
        definition, resolver=resolver, formats={}, use_default=False, use_formats=True
    )
    state = generator.global_state
    code = compile(generator.func_code, "<fastjsonschema>", "exec")
    exec(code, state)  # as fastjsonschema.compile does
    fn: Any = state[resolver.get_scope_name()]
    fn._code, fn._scope = code, resolver.get_scope_name()
    return cast(Callable[[Any], Any], fn)


def _base_state() -> dict[str, Any]:
    """The globals fastjsonschema gives generated code, less the regex table."""
    state = _LeanDraft07(
        {}, resolver=RefResolver.from_schema({}, handlers={}, store={})
    ).global_state
    state.pop("REGEX_PATTERNS")
    return state


_BASE_STATE = _base_state()


def recipe(validate: Validator) -> tuple[Any, ...] | None:
    """How to make ``validate`` again in another process: plain data, or None if it cannot be.

    A policy compiled in a child process (``policy._child``) travels as a pickle; the
    generated code travels as its marshalled code object, the regex table as its patterns.
    Worked out when asked (a Stripe description's code is ~8 MB marshalled).
    """
    made = getattr(validate, "_made_from", None)
    if made is None or isinstance(made, tuple):
        return made
    return _fast_recipe(made)


def rebuild(kind: str, *args: Any) -> Validator:
    """The validator a ``recipe`` describes (in the process that unpickles it)."""
    if kind == "slow":
        (schema,) = args
        validator = LinearDraft202012Validator(schema, format_checker=FormatChecker())
        return _slow(validator, schema)
    code, scope, table = args
    state = dict(_BASE_STATE)
    state["custom_formats"] = {}
    state["REGEX_PATTERNS"] = {
        key: compile_pattern(source) if how == "linear" else re.compile(source, flags)
        for key, how, source, flags in table
    }
    module = marshal.loads(code)
    exec(module, state)
    fn = state[scope]
    fn._code, fn._scope = module, scope
    return _fast(fn)


def _fast_recipe(fn: Any) -> tuple[Any, ...] | None:
    code = getattr(fn, "_code", None)
    if code is None:
        return None
    table = []
    for key, value in fn.__globals__["REGEX_PATTERNS"].items():
        if isinstance(value, LinearPattern):
            table.append((key, "linear", value.pattern, 0))
        else:
            table.append((key, "re", value.pattern, value.flags))
    return ("fast", marshal.dumps(code), fn._scope, tuple(table))


# fastjsonschema's ``email`` regex has ``(?!.*\.\..*@)``: quadratic on a long dotted string.
# Same language (no ".." and no trailing "." before the "@"), without lookaround; stricter only
# where the original's ``.`` stopped at a newline.
_FAST_FORMATS = {"email_re_pattern": r"^[^@.](?:\.?[^@.])*@[^@]+\.[^@]+$"}


def _use_linear_regexes(fn: Callable[[Any], Any], patterns: set[str]) -> bool:
    """Swap the generated code's ``re`` objects for RE2 ones; False if that is not possible.

    The generated code looks each schema regex up by its source text in ``REGEX_PATTERNS``
    (format regexes under ``<format>_re_pattern``) and only calls ``.search``/``.match``.
    """
    table = getattr(fn, "__globals__", {}).get("REGEX_PATTERNS")
    if not isinstance(table, dict):
        return False
    for key in table:
        if key in patterns:
            if key.endswith("_re_pattern"):
                return False  # a schema regex spelled like a format slot: ambiguous
            table[key] = compile_pattern(key)
        elif key in _FAST_FORMATS:
            table[key] = compile_pattern(_FAST_FORMATS[key])
        elif not key.endswith("_re_pattern"):
            return False  # a regex we do not know about: do not let it run on input
    return True


def _pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and not compile_pattern(patrn).search(instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def _pattern_properties(validator: Any, pattern_properties: Any, instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object"):
        return
    for patrn, subschema in pattern_properties.items():
        regex = compile_pattern(patrn)
        for key, value in instance.items():
            if regex.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=patrn)


def _additional(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    properties = schema.get("properties", {})
    regexes = [compile_pattern(p) for p in schema.get("patternProperties", {})]
    return [
        key for key in instance if key not in properties and not any(r.search(key) for r in regexes)
    ]


def _additional_properties(validator: Any, ap: Any, instance: Any, schema: Any) -> Any:
    """``jsonschema``'s keyword, with RE2 for the ``patternProperties`` it skips."""
    if not validator.is_type(instance, "object"):
        return
    extras = _additional(instance, schema)
    if validator.is_type(ap, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], ap, path=extra)
    elif not ap and extras:
        joined = ", ".join(repr(each) for each in sorted(extras))
        yield ValidationError(f"Additional properties are not allowed ({joined} unexpected)")


def _evaluated_keys(validator: Any, instance: Mapping[str, Any], schema: Any) -> set[str]:
    """``jsonschema._utils.find_evaluated_property_keys_by_schema`` with RE2 for patterns."""
    if not isinstance(schema, Mapping):
        return set()
    keys: set[str] = set()
    ref = schema.get("$ref")
    if ref is not None:
        resolved = validator._resolver.lookup(ref)
        child = validator.evolve(schema=resolved.contents, _resolver=resolved.resolver)
        keys |= _evaluated_keys(child, instance, resolved.contents)
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        keys |= properties.keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        subschema = schema.get(keyword)
        if subschema is not None:
            keys |= {
                k for k, v in instance.items() if validator.evolve(schema=subschema).is_valid(v)
            }
    regexes = [compile_pattern(p) for p in schema.get("patternProperties", {})]
    keys |= {k for k in instance if any(r.search(k) for r in regexes)}
    for name, subschema in (schema.get("dependentSchemas") or {}).items():
        if name in instance:
            keys |= _evaluated_keys(validator, instance, subschema)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, []):
            if validator.evolve(schema=subschema).is_valid(instance):
                keys |= _evaluated_keys(validator, instance, subschema)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            keys |= _evaluated_keys(validator, instance, schema["if"])
            if "then" in schema:
                keys |= _evaluated_keys(validator, instance, schema["then"])
        elif "else" in schema:
            keys |= _evaluated_keys(validator, instance, schema["else"])
    return keys


def _unevaluated_properties(validator: Any, up: Any, instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object"):
        return
    evaluated = _evaluated_keys(validator, instance, schema)
    bad = [
        key
        for key in instance
        if key not in evaluated and not validator.evolve(schema=up).is_valid(instance[key])
    ]
    if bad:
        joined = ", ".join(repr(each) for each in sorted(bad))
        if up is False:
            yield ValidationError(f"Unevaluated properties are not allowed ({joined} unexpected)")
        else:
            yield ValidationError(
                f"Unevaluated properties are not valid under the schema ({joined})"
            )


# Every keyword of Draft 2020-12 that runs a schema regex, on RE2 ($dynamicRef is refused).
LinearDraft202012Validator = jsonschema.validators.extend(
    Draft202012Validator,
    {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
        "unevaluatedProperties": _unevaluated_properties,
    },
)


class _Release:
    """Empties a generated module's globals when the validator using it is dropped.

    Generated functions live in their module's globals (they call each other by name), so each
    validator is a reference cycle that only the cyclic garbage collector frees; ``serve``
    keeps its heap frozen out of that collector (``server.heap``), where the old policy of
    every reload would stay for good. Held only by the validator's closure, this runs when no
    check can reach the validator any more and breaks the cycle, so a dropped policy is freed
    by reference counting alone, with no collection pause.
    """

    __slots__ = ("state",)

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def __del__(self) -> None:
        self.state.clear()


_SET_IN_MESSAGE = re.compile(r"must not contain (\{.*\}) properties$", re.S)


def _readable(msg: str) -> str:
    """fastjsonschema writes extra keys as a Python set (``{'admin'}``, in hash-seed order):
    name them sorted and quoted instead."""
    m = _SET_IN_MESSAGE.search(msg)
    if m is None:
        return msg
    try:
        keys = ast.literal_eval(m.group(1))
    except (ValueError, SyntaxError):
        return msg
    if not isinstance(keys, set):
        return msg
    names = ", ".join(repr(k) for k in sorted(keys, key=str))
    noun = "property" if len(keys) == 1 else "properties"
    return f"{msg[: m.start()]}must not contain the {noun} {names}"


def _fast(fn: Callable[[Any], Any]) -> Validator:
    exc_type = fastjsonschema.JsonSchemaValueException
    release = _Release(fn.__globals__)

    def validate(instance: Any) -> str | None:
        try:
            fn(instance)
        except exc_type as exc:
            msg = exc.message
            if msg.startswith("data"):
                msg = "body" + msg[4:]
            return _readable(msg)
        except (RecursionError, re.error, TypeError, ValueError) as exc:
            return f"body cannot be validated: {type(exc).__name__}"
        return None

    validate._release = release  # type: ignore[attr-defined]
    validate._made_from = fn  # type: ignore[attr-defined]
    return validate


def _slow(validator: Any, schema: Any) -> Validator:
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

    validate._made_from = ("slow", schema)  # type: ignore[attr-defined]
    return validate


# --- unknown fields --------------------------------------------------------------------


@dataclass(slots=True)
class FieldTree:
    """What keys an object may carry (``open``: any) and the trees below them."""

    open: bool = False
    props: dict[str, FieldTree] = field(default_factory=dict)
    patterns: list[LinearPattern] = field(default_factory=list)
    items: FieldTree | None = None
    is_object: bool = False

    def __reduce__(self) -> str | tuple[Any, ...]:
        """``OPEN`` stays the one ``OPEN`` through pickling (``unknown_fields`` tests ``is``)."""
        if self is OPEN:
            return "OPEN"
        return FieldTree, (self.open, self.props, self.patterns, self.items, self.is_object)

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


def _tree(schema: Any, root: Mapping[str, Any], depth: int, refs: set[str]) -> FieldTree:
    if not isinstance(schema, Mapping) or depth > 64:
        return OPEN
    parts: list[FieldTree] = []
    ref = schema.get("$ref")
    if isinstance(ref, str):
        if ref in refs:
            return OPEN  # recursive schema: stop here, accept below
        target = resolve_pointer(ref, root)
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
        own.patterns.append(compile_pattern(pattern))
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
            props = t.props
            if t.open and not props:
                continue
            for key, child in node.items():
                # hot path: a declared key costs one dict lookup (``child`` only for the rest),
                # and the dotted path is built only when it is reported or descended into
                sub = props.get(key)
                if sub is None:
                    sub = t.child(key)
                    if sub is None:
                        found.append(f"{path}.{key}" if path else key)
                        if len(found) >= limit:
                            return found
                        continue
                if (type(child) is dict or type(child) is list) and sub is not OPEN:
                    stack.append((child, sub, f"{path}.{key}" if path else key))
        elif type(node) is list and t.items is not None and t.items is not OPEN:
            for child in node:
                if type(child) is dict or type(child) is list:
                    stack.append((child, t.items, path))
    return found


# A sample the caller's adapter redacted (``json.redacted: true``) has masked values
# (``"licenseKey": "***"``) that no value constraint can judge. It is validated against the
# schema's *structure*: objects and arrays where the schema has them, required keys, unknown
# keys, array sizes; scalar types and value keywords are dropped, ``oneOf`` reads as
# ``anyOf`` (its branches may differ only in values), and ``not``/``if`` (which could turn a
# dropped value test into a refusal) are dropped.
_VALUE_KEYWORDS = frozenset({
    "pattern", "minLength", "maxLength", "format", "enum", "const", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "contentEncoding",
    "contentMediaType", "contentSchema", "not", "if", "then", "else", "propertyNames",
})  # fmt: skip


def structural_schema(schema: Any) -> Any:
    """``schema`` with its value constraints removed (see above); the input is not changed."""
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _VALUE_KEYWORDS:
            continue
        if key == "type":
            kinds = [value] if isinstance(value, str) else list(value)
            kept = [k for k in kinds if k in ("object", "array")]
            if kept and len(kept) == len(kinds):
                out["type"] = value
            continue
        if key in SCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {k: structural_schema(v) for k, v in value.items()}
        elif key == "oneOf" and isinstance(value, list):
            branches = {"anyOf": [structural_schema(v) for v in value]}
            out["allOf"] = [*out.get("allOf", []), branches]
        elif key in SCHEMA_LISTS and isinstance(value, list):
            kept = [structural_schema(v) for v in value]
            out[key] = [*out.get(key, []), *kept] if key == "allOf" else kept
        elif key in SCHEMA_ONE or (key == "items" and isinstance(value, list)):
            out[key] = (
                [structural_schema(v) for v in value]
                if isinstance(value, list)
                else structural_schema(value)
            )
        else:
            out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class BodyMedia:
    """One media type of an operation's request body, as its description declares it."""

    media: str  # lower case, without parameters; may be a range ("image/*", "*/*")
    kind: str  # "json" | "form" | "multipart" | "other" (accepted, content not checked)
    schema: Any = None  # bundled 2020-12 schema (json, form, multipart)
    encodings: Mapping[str, Encoding] = field(default_factory=dict)  # property -> style
    part_types: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # encoding.contentType


@dataclass(frozen=True, slots=True)
class MediaCheck:
    """A ``BodyMedia`` compiled: its contract, and for forms the shape values are built by."""

    media: str
    kind: str
    contract: Contract | None
    shape: Shape | None = None
    encodings: Mapping[str, Encoding] = field(default_factory=dict)
    part_types: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def media_matches(declared: str, actual: str) -> bool:
    """``actual`` (a bare media type) falls under ``declared`` (a type or a range)."""
    if declared == actual or declared == "*/*":
        return True
    if declared.endswith("/*"):
        return actual.startswith(declared[:-1])
    return False


def _pairs_of(sample: Any) -> list[tuple[str, str]]:
    """A parsed form sample (an adapter's dict) as pairs; lists are repeated keys."""
    pairs: list[tuple[str, str]] = []
    if isinstance(sample, dict):
        for key, value in sample.items():
            for v in value if isinstance(value, list) else [value]:
                pairs.append((str(key), v if isinstance(v, str) else json_text(v)))
    return pairs


def json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _part_value(part: Part, check: MediaCheck, problems: list[str]) -> tuple[str, Any] | None:
    """(key, value) a multipart part gives ``build``; None once reported."""
    name = part.name
    base = name.partition("[")[0]
    shape = check.shape.child(base) if check.shape is not None else None
    allowed = check.part_types.get(base)
    sent = part.content_type.split(";")[0].strip().lower()
    if allowed is not None:
        actual = sent or ("text/plain" if part.filename is None else "application/octet-stream")
        if not any(media_matches(a, actual) for a in allowed):
            problems.append(
                f"body.{name[:60]}: part of type {actual[:60]!r}; the description allows "
                + ", ".join(allowed)
            )
            return None
    binary = part.filename is not None or (shape is not None and shape.binary)
    if binary and (shape is None or shape.binary or part.text is None):
        # file contents: a string of one character per byte, so maxLength counts bytes
        return name, part.data.decode("latin-1")
    if part.text is None:
        problems.append(f"body.{name[:60]}: part is not UTF-8 text")
        return None
    if sent and (sent == "application/json" or sent.endswith("+json")):
        try:
            return name, Typed(_json_loads(part.text))
        except ValueError:
            problems.append(f"body.{name[:60]}: part of type {sent[:60]!r} is not JSON")
            return None
    if (
        shape is not None
        and shape.object_only
        and "[" not in name
        and base not in (check.encodings)
    ):
        # an object property sent as one part: JSON, OpenAPI's default for objects
        try:
            return name, Typed(_json_loads(part.text))
        except ValueError:
            problems.append(f"body.{name[:60]}: an object part must be JSON")
            return None
    return name, part.text


def _json_loads(text: str) -> Any:
    from .decoders._base import json_depth

    if json_depth(text.encode("utf-8", "surrogatepass")) > 32:
        raise ValueError("too deep")
    import json

    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("too deep") from None


@dataclass(frozen=True, slots=True)
class Contract:
    validate: Validator
    engine: str
    unknown: FieldTree | None  # None: unknown fields allowed
    schema_source: str  # file path or "<inline>", for messages
    structural: Validator | None = None  # for redacted samples; see ``structural_schema``
    # From an OpenAPI operation (``openapiRef``): its declared parameters (a
    # ``parameters.ParameterChecks``), and whether an absent body is fine
    # (``requestBody.required: false``).
    parameters: Any = None
    body_optional: bool = False
    # From an OpenAPI operation: its request body by media type (``()``: it takes none). None:
    # the body is JSON checked against ``validate`` (a schema, or a description's schema).
    bodies: tuple[MediaCheck, ...] | None = None

    def check(
        self,
        value: Any,
        hits: list[RuleHit],
        redacted: bool = False,
        parsed: ParsedBody | None = None,
        media: str = "",
    ) -> None:
        """Validate ``value``; with ``bodies`` and the ``parsed`` body, as its ``media`` says."""
        if self.bodies is not None and parsed is not None:
            self._by_media(parsed, media, hits, redacted)
            return
        validate = self.structural if redacted and self.structural is not None else self.validate
        error = validate(value)
        if error is not None:
            hits.append(RuleHit(SCHEMA_INVALID, "high", error[:300]))
        if self.unknown is not None:
            extra = unknown_fields(self.unknown, value)
            if extra:
                hits.append(
                    RuleHit(UNKNOWN_FIELD, "high", ("unknown field(s): " + ", ".join(extra))[:300])
                )

    def _by_media(
        self, parsed: ParsedBody, media: str, hits: list[RuleHit], redacted: bool
    ) -> None:
        bodies = self.bodies or ()
        if parsed.kind == NONE:
            if not self.body_optional:
                hits.append(RuleHit(SCHEMA_INVALID, "high", "a request body is required"))
            return
        if not bodies:
            hits.append(RuleHit(MEDIA_TYPE, "high", "the operation takes no request body"))
            return
        if not media and parsed.kind == JSON and not parsed.sniffed:
            media = "application/json"  # an adapter's parsed sample, its type not given
        if "," in media:  # repeated Content-Type headers: upstreams differ on which one wins
            hits.append(RuleHit(MEDIA_TYPE, "high", f"several content types: {media[:120]!r}"))
            return
        check = next((b for b in bodies if b.media == media), None)
        if check is None:
            check = next((b for b in bodies if media and media_matches(b.media, media)), None)
        if check is None:
            accepted = ", ".join(b.media for b in bodies)
            hits.append(
                RuleHit(
                    MEDIA_TYPE,
                    "high",
                    f"content type {media[:80] or 'missing'!r} is not one the operation accepts "
                    f"({accepted})"[:300],
                )
            )
            return
        contract = check.contract
        if contract is None or check.kind == "other":
            return  # an accepted type whose content the description does not describe
        kind = parsed.kind
        if check.kind == "json":
            if kind == JSON and not parsed.sniffed:
                contract.check(parsed.value, hits, redacted)
            else:
                hits.append(RuleHit(SCHEMA_INVALID, "high", f"body is not JSON ({media!r})"))
            return
        problems: list[str] = []
        shape = check.shape
        assert shape is not None
        if check.kind == "form" and kind == FORM:
            pairs: list[tuple[str, Any]] = list(parsed.form_pairs)
        elif check.kind == "form" and kind == JSON and not parsed.sniffed:
            pairs = list(_pairs_of(parsed.value))  # an adapter's parsed sample
        elif check.kind == "multipart" and kind == MULTIPART:
            pairs = []
            for part in parsed.parts:
                got = _part_value(part, check, problems)
                if got is not None:
                    pairs.append(got)
        else:
            hits.append(
                RuleHit(SCHEMA_INVALID, "high", f"body is not {check.media} ({media!r})"[:300])
            )
            return
        value, errors = build(pairs, shape, check.encodings)
        problems.extend(errors)
        if problems:
            hits.append(RuleHit(SCHEMA_INVALID, "high", "; ".join(problems)[:300]))
            return
        contract.check(value, hits, redacted)


def compile_bodies(
    bodies: tuple[BodyMedia, ...],
    *,
    reject_unknown: bool,
    source: str,
    first: Contract,
    first_schema: Any,
    metaschema: MetaschemaChecks | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[MediaCheck, ...]:
    """Each media type's check; ``first`` is the contract already compiled for
    ``first_schema`` (reused for every media type with that schema). A schema that cannot be
    compiled refuses, or with ``warn`` is said there and its media type accepted unchecked."""
    out: list[MediaCheck] = []
    for b in bodies:
        if b.kind == "other" or b.schema is None:
            out.append(MediaCheck(b.media, "other", None))
            continue
        if b.schema is first_schema:
            contract = first
        else:
            try:
                contract = compile_contract(
                    b.schema, reject_unknown=reject_unknown, source=source, metaschema=metaschema
                )
            except SchemaProblem as exc:
                if warn is None:
                    raise
                warn(f"{source}: request body {b.media}: {exc}; its content is not checked")
                out.append(MediaCheck(b.media, "other", None))
                continue
        shape = shape_of(b.schema) if b.kind in ("form", "multipart") else None
        out.append(MediaCheck(b.media, b.kind, contract, shape, b.encodings, b.part_types))
    return tuple(out)


def compile_contract(
    schema: Any,
    *,
    reject_unknown: bool,
    source: str,
    engine: str = "auto",
    metaschema: MetaschemaChecks | None = None,
) -> Contract:
    validate, used = compile_validator(schema, engine=engine, metaschema=metaschema)
    tree = field_tree(schema) if reject_unknown else None
    structural, _ = compile_validator(
        structural_schema(schema), engine=engine, metaschema=metaschema
    )
    return Contract(validate, used, tree, source, structural)
