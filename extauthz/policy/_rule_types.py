"""Rules that configure a built-in check (upstream ContractShield's rule types).

Upstream policies configure checks in two places: a route's sections (``limits``,
``contract``, ``webhook``) and rules of types other than ``cel``::

    - {id: limit.body.activate, type: limit, config: {maxBodyBytes: 32768}}
    - {id: webhook.stripe.signature, type: webhook-signature, severity: critical}

Such a rule's ``config`` merges into the route's section of the same kind (a key set in both
places is refused: which one wins would be a guess), and the rule names the check's hits:
its ``id`` replaces the built-in hit id, its ``severity`` (when given) replaces the built-in
severity, and ``action: monitor`` makes them advisory. Upstream ignores unknown rule types
and ``action``; here an unknown type is refused and ``action`` is honoured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..engine import checks
from ..engine.model import HitOverride
from ._schema import format_path

# Which built-in hits each rule type names: a limit key's hit, or a webhook hit kind.
LIMIT_HITS = {c.name: c.hit for c in checks.LIMIT_CHECKS}
CONTRACT_HITS = checks.contract.CHECK.hits
VERIFY = "@verify"  # webhook.<provider>.signature, once the provider is known
REPLAY = "@replay"  # webhook.<provider>.replay
_SECTION = {
    "limit": "limits",
    "limits": "limits",
    "contract": "contract",
    "webhook": "webhook",
    "webhook-signature": "webhook",
    "webhook-replay": "webhook",
}


@dataclass(slots=True)
class Section:
    """A route section merged from the route and its configuring rules."""

    values: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, list[Any]] = field(default_factory=dict)  # key -> path it came from
    at: list[Any] | None = None  # the route's own section, or the first rule that made it

    def where(self, key: str | None = None) -> list[Any]:
        if key is not None and key in self.origin:
            return self.origin[key]
        return self.at or []


@dataclass(slots=True)
class RouteParts:
    sections: dict[str, Section]
    cel_rules: list[tuple[int, Mapping[str, Any]]]
    # (target, override, rule path): target is a built-in hit id, VERIFY or REPLAY
    overrides: list[tuple[str, HitOverride, list[Any]]]
    replay_rule: list[Any] | None = None  # path of a webhook-replay rule, if any
    ok: bool = True


def split(r: Mapping[str, Any], at: list[Any], add: Any) -> RouteParts:
    """Merge the route's sections with its configuring rules; ``add(path, reason)`` reports."""
    sections: dict[str, Section] = {}
    for name in ("limits", "contract", "webhook"):
        value = r.get(name)
        if isinstance(value, Mapping):
            sections[name] = Section(dict(value), {k: [*at, name, k] for k in value}, [*at, name])
    parts = RouteParts(sections, [], [])
    raw = r.get("rules")
    seen: dict[str, int] = {}
    for j, rule in enumerate(raw if isinstance(raw, list) else ()):
        if not isinstance(rule, Mapping):
            continue
        where = [*at, "rules", j]
        rid = rule.get("id")
        if isinstance(rid, str):
            if rid in seen:
                add([*where, "id"], f"duplicate rule id {rid!r} (also rules[{seen[rid]}])")
                parts.ok = False
                continue
            seen[rid] = j
        kind = rule.get("type")
        if rule.get("action") == "allow":
            add(
                [*where, "action"],
                "action 'allow' has no defined meaning (upstream's engine blocks on the hit "
                "anyway); use 'block' or 'monitor'",
            )
            parts.ok = False
        if kind == "cel":
            parts.cel_rules.append((j, rule))
            continue
        if kind not in _SECTION or not isinstance(rule.get("id"), str):
            continue  # the structural check reported it
        name = _SECTION[kind]
        section = sections.setdefault(name, Section(at=where))
        config = rule.get("config")
        for key, value in config.items() if isinstance(config, Mapping) else ():
            if key in section.origin:
                add(
                    [*where, "config", key],
                    f"{key} is already set at {format_path(section.origin[key])}; set it once",
                )
                parts.ok = False
                continue
            section.values[key] = value
            section.origin[key] = [*where, "config", key]
        override = HitOverride(
            rule["id"],
            rule.get("severity") if isinstance(rule.get("severity"), str) else None,
            rule.get("action", "block") != "monitor",
        )
        if name == "limits":
            given = config if isinstance(config, Mapping) else {}
            targets = [hit for key, hit in LIMIT_HITS.items() if key in given]
        elif name == "contract":
            targets = list(CONTRACT_HITS)
        elif kind == "webhook-replay":
            targets = [REPLAY]
            parts.replay_rule = where
        else:
            targets = [VERIFY]
        parts.overrides.extend((t, override, where) for t in targets)
    return parts
