"""Reading a policy document: YAML (safe subset) or JSON, with hostile-input guards.

YAML anchors and aliases are refused: they are the vector of "billion laughs" expansion and a
policy has no need for them. Mapping keys must be strings (YAML allows ``1:`` or ``on:``
booleans as keys, which would silently become something else).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from .._exceptions import PolicyProblem

MAX_POLICY_BYTES = 4 * 1024 * 1024


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


def _no_dup_json(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def parse_document(data: bytes, source: str) -> tuple[Any, list[PolicyProblem]]:
    """Parse policy bytes; return (document, problems)."""
    if len(data) > MAX_POLICY_BYTES:
        return None, [PolicyProblem(source, "", f"file is larger than {MAX_POLICY_BYTES} bytes")]
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
        return yaml.load(text, Loader=_NoAliasLoader), []
    except RecursionError:
        return None, [PolicyProblem(source, "", "YAML is nested too deeply")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return None, [PolicyProblem(source, "", f"invalid YAML: {where}{exc.problem or exc}")]
    except yaml.YAMLError as exc:
        return None, [PolicyProblem(source, "", f"invalid YAML: {exc}")]


def parse_schema_file(data: bytes, source: str) -> tuple[Any, str | None]:
    """Parse a JSON Schema file (JSON, or YAML for .yaml/.yml); return (schema, error)."""
    doc, problems = parse_document(data, source)
    if problems:
        return None, problems[0].reason
    return doc, None
