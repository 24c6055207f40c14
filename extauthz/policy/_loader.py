"""Reading a policy document: YAML (safe subset) or JSON, with hostile-input guards.

YAML anchors and aliases are refused: they are the vector of "billion laughs" expansion and a
policy has no need for them. Mapping keys must be strings (YAML allows ``1:`` or ``on:``
booleans as keys, which would silently become something else), and unique.

Two readers give the same documents and the same refusals. ``_NoAliasLoader`` is PyYAML's
pure-Python loader with those checks: exact, and ~2.3 s of CPU per MB (a 4 MB OpenAPI document
took 9.5 s). ``_fast_yaml`` builds the same objects straight from libyaml's C event stream
(~0.1 s per MB): it resolves each plain scalar with the loader's own resolver and constructor
(cached per distinct text), and gives up (``_Slow``) on anything it does not handle the plain
way: an anchor, an alias, an explicit tag, a merge key, a duplicate or non-string key, a second
document, nesting deeper than 100, and what libyaml is more lenient with: a tab outside a
quoted or block scalar, a block scalar header with a tab or a comment without a space before
it, a "?" inside a plain scalar in a flow collection; and any libyaml error. Then the exact reader runs, so every refusal keeps its message and
its line and column. ``tests/policy/test_yaml_reader.py`` holds both to the same answers over
a corpus of odd documents (``FAST_YAML = False`` reads everything the exact way).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from .._exceptions import PolicyProblem

MAX_POLICY_BYTES = 4 * 1024 * 1024
# Files a policy references (OpenAPI documents, schema files): the largest public REST
# descriptions are ~10 MB; a server raises it with this setting
# (``load_policy(max_document_bytes=...)``).
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
DOCUMENT_LIMIT_SETTING = "MAX_DOCUMENT_BYTES"
# The seam for ``_fast_yaml``; False reads every YAML document with ``_NoAliasLoader``.
FAST_YAML = True

try:  # the C parser ships in PyYAML's wheels; without it every document is read the exact way
    from yaml._yaml import CParser as _CParser
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    _CParser = None


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors/aliases and non-string mapping keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "YAML aliases (*name) are not allowed in a policy", event.start_mark
            )
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "YAML anchors (&name) are not allowed in a policy", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"mapping keys must be strings, got {type(key).__name__} {key!r} (quote it)",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Slow(Exception):
    """``_fast_yaml`` met something only the exact reader answers for."""


_STR = "tag:yaml.org,2002:str"
_SPECIAL = frozenset({"tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"})
_RESOLVER = yaml.SafeLoader("")  # its resolve() and construct_yaml_* methods, nothing else
_PLAIN = (True, False)
# The exact reader recurses (about 3 frames a level) and gives "nested too deeply" somewhere
# past 300 levels; deeper than this, it decides. Real descriptions nest ~25 levels.
_MAX_DEPTH = 100
_TAB = re.compile("\t")
# A block scalar's header as the exact reader takes it: indicators, then only spaces, a
# comment after at least one space, and the line's end.
_BREAKS = "\r\n\x85\u2028\u2029"
_BLOCK_HEADER = re.compile(
    f"[|>](?:[-+][1-9]?|[1-9][-+]?)?(?: +(?:#[^{_BREAKS}]*)?)?(?:[{_BREAKS}]|\\Z)"
)


def _plain_scalar(value: str, cache: dict[str, Any]) -> Any:
    """What the SafeLoader makes of a plain (unquoted, untagged) scalar."""
    tag = _RESOLVER.resolve(yaml.ScalarNode, value, _PLAIN)
    if tag == _STR:
        out: Any = value
    elif tag in _SPECIAL:
        raise _Slow
    else:
        node = yaml.ScalarNode(tag, value)
        out = _RESOLVER.yaml_constructors[tag](_RESOLVER, node)
    cache[value] = out
    return out


def _fast_yaml(text: str) -> Any:
    """The document ``yaml.load(text, _NoAliasLoader)`` returns, or ``_Slow``."""
    if _CParser is None:
        raise _Slow
    parser = _CParser(text)
    cache: dict[str, Any] = {}
    get = parser.get_event
    stack: list[Any] = []  # open containers: a list, or a dict with its pending key below it
    keys: list[Any] = []  # per open dict: the key waiting for its value (None: expecting a key)
    root: Any = None
    documents = 0
    styles: list[bool] = []  # per open container: written in flow style ([...], {...})
    flow = 0  # open flow-style containers
    # libyaml takes a tab as a separator where the exact reader refuses it ("a:\tb"): a tab
    # must lie inside a quoted or block scalar (both readers take it there as content)
    tabs = [m.start() for m in _TAB.finditer(text)] if "\t" in text else []
    ntabs = len(tabs)
    t = 0
    scalar, start_map, start_seq = yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent
    end_map, end_seq = yaml.MappingEndEvent, yaml.SequenceEndEvent
    try:
        while True:
            event = get()
            if event is None:
                break
            kind = type(event)
            if kind is scalar:
                if event.anchor is not None or event.tag is not None:
                    raise _Slow
                style = event.style
                if event.implicit[0]:
                    value = event.value
                    if flow and "?" in value:
                        raise _Slow  # in a flow collection the exact reader ends a scalar at "?"
                    item = cache[value] if value in cache else _plain_scalar(value, cache)
                else:
                    item = event.value
                    if (style == "|" or style == ">") and not _BLOCK_HEADER.match(
                        text, event.start_mark.index
                    ):
                        raise _Slow  # libyaml takes "|#c" and "|\t"; the exact reader does not
                    if t < ntabs:
                        if tabs[t] < event.start_mark.index:
                            raise _Slow
                        end = event.end_mark.index
                        while t < ntabs and tabs[t] < end:
                            t += 1
                if not stack:
                    root = item
                    continue
                top = stack[-1]  # the common case of ``_attach``, inlined: half the events
                if type(top) is list:
                    top.append(item)
                    continue
                key = keys[-1]
                if key is _NO_KEY:
                    if type(item) is not str or item in top:
                        raise _Slow  # a refused key: the exact reader names it and where it is
                    keys[-1] = item
                    top[item] = None  # holds the key's place (and order) until its value comes
                else:
                    top[key] = item
                    keys[-1] = _NO_KEY
                continue
            if kind is start_map or kind is start_seq:
                if event.anchor is not None or event.tag is not None:
                    raise _Slow
                item = {} if kind is start_map else []
                _attach(item, stack, keys)
                if len(stack) >= _MAX_DEPTH:
                    raise _Slow  # where the exact reader's recursion may give out
                stack.append(item)
                keys.append(_NO_KEY)
                styles.append(bool(event.flow_style))
                flow += styles[-1]
            elif kind is end_map or kind is end_seq:
                item = stack.pop()
                keys.pop()
                flow -= styles.pop()
                if not stack:
                    root = item
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _Slow  # the exact reader's "expected a single document"
            elif kind is yaml.StreamStartEvent or kind is yaml.DocumentEndEvent:
                continue
            elif kind is yaml.StreamEndEvent:
                break
            else:  # AliasEvent, or anything new
                raise _Slow
    except yaml.YAMLError:
        raise _Slow from None
    finally:
        parser.dispose()
    if t < ntabs:
        raise _Slow
    return root


_NO_KEY = object()


def _attach(item: Any, stack: list[Any], keys: list[Any]) -> None:
    if not stack:
        return
    top = stack[-1]
    if type(top) is list:
        top.append(item)
        return
    key = keys[-1]
    if key is _NO_KEY:
        if type(item) is not str or item in top:
            raise _Slow  # a refused key: the exact reader names it and where it is
        keys[-1] = item
        top[item] = None  # holds the key's place (and order) until its value arrives
    else:
        top[key] = item
        keys[-1] = _NO_KEY


def _no_dup_json(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def load_yaml(text: str) -> Any:
    """``text`` as the exact reader reads it (raises what it raises); fast when possible."""
    if FAST_YAML:
        try:
            return _fast_yaml(text)
        except (_Slow, RecursionError):
            pass
    return yaml.load(text, Loader=_NoAliasLoader)


def size_problem(size: int, limit: int, setting: str | None) -> str:
    """The refusal of a file above ``limit``: its size, the limit and what raises it."""
    where = f" (setting {setting})" if setting else ""
    return f"{size} bytes is larger than the {limit}-byte limit{where}"


def parse_document(
    data: bytes,
    source: str,
    *,
    max_bytes: int = MAX_POLICY_BYTES,
    setting: str | None = None,
) -> tuple[Any, list[PolicyProblem]]:
    """Parse policy bytes; return (document, problems)."""
    if len(data) > max_bytes:
        return None, [
            PolicyProblem(source, "", "file " + size_problem(len(data), max_bytes, setting))
        ]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [PolicyProblem(source, "", f"not valid UTF-8 (byte {exc.start})")]
    stripped = text.lstrip()
    if stripped.startswith("{") or source.endswith(".json"):
        try:
            return json.loads(text, object_pairs_hook=_no_dup_json), []
        except RecursionError:
            return None, [PolicyProblem(source, "", "JSON is nested too deeply")]
        except ValueError as exc:
            return None, [PolicyProblem(source, "", f"invalid JSON: {exc}")]
    try:
        return load_yaml(text), []
    except RecursionError:
        return None, [PolicyProblem(source, "", "YAML is nested too deeply")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return None, [PolicyProblem(source, "", f"invalid YAML: {where}{exc.problem or exc}")]
    except yaml.YAMLError as exc:
        return None, [PolicyProblem(source, "", f"invalid YAML: {exc}")]


def parse_schema_file(data: bytes, source: str, *, max_bytes: int) -> tuple[Any, str | None]:
    """Parse a JSON Schema or OpenAPI file (JSON, or YAML); return (document, error)."""
    doc, problems = parse_document(data, source, max_bytes=max_bytes)
    if problems:
        return None, problems[0].reason
    return doc, None
