"""Prototype pollution: a ``__proto__`` or ``constructor.prototype`` key in the body or query."""

from __future__ import annotations

from typing import Any

from ._kinds import Detector


def proto_key_reason(key: str, value: Any) -> str | None:
    if "__proto__" in key:
        return f"key {key!r}"
    if key == "constructor" and isinstance(value, dict) and "prototype" in value:
        return "key 'constructor.prototype'"
    if "constructor" in key and "prototype" in key:
        return f"key {key!r}"
    return None


EXPLAIN = "a key that reaches a JavaScript object's prototype when the body is merged"
CHECK = Detector("prototypePollution", "vulnerability.prototypePollution", True, EXPLAIN,
                 keys=proto_key_reason, key_triggers=("__proto__", "constructor"))  # fmt: skip
