"""The catalogue of built-in checks: each declared once, in a module of its own.

Every entry is a ``BuiltinCheck`` (``_kinds``): its policy name, the section and JSON Schema
fragment of its setting, its hit ids, its phase, its default and a line of explanation. What
reads the catalogue instead of naming checks: the vulnerability phase (``Detector``s, in hit
order), ``engine.limits`` (``Limit``s), the pipeline and contract (hit ids), the policy JSON
Schema (``policy._schema``), the compiler (``BUILTIN_IDS``, settings and defaults), the rule
types (``policy._rule_types``) and ``explain`` (names, phases, locations).

Adding a check: a module here declaring its entry (and, for a detector, its functions), one
line in the tuple of its kind below, and its tests (``docs/architecture-checks.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import (
    command_injection,
    contract,
    limits,
    nosql_injection,
    path_traversal,
    pipeline_hits,
    prototype_pollution,
    sql_injection,
    ssrf_internal,
    webhook,
    xss,
)
from ._kinds import (
    CEL,
    CONTRACT,
    DEFAULT_LOCATION,
    ENGINE,
    LIMITS,
    OFF,
    ON,
    PHASES,
    REPLAY,
    ROUTE,
    RULE,
    VULNERABILITY,
    WEBHOOK,
    BuiltinCheck,
    Check,
    Detector,
    HitSet,
    Limit,
)

# Detectors in hit order: a decision lists vulnerability hits in this order.
DETECTORS: tuple[Detector, ...] = (
    prototype_pollution.CHECK,
    path_traversal.CHECK,
    ssrf_internal.CHECK,
    command_injection.CHECK,
    nosql_injection.CHECK,
    sql_injection.CHECK,
    xss.CHECK,
)
LIMIT_CHECKS: tuple[Limit, ...] = limits.CHECKS
OTHER_CHECKS: tuple[HitSet, ...] = (*pipeline_hits.CHECKS, contract.CHECK)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The built-in checks by kind; ``CATALOGUE`` is the product's, a test may build another."""

    detectors: tuple[Detector, ...] = DETECTORS
    limits: tuple[Limit, ...] = LIMIT_CHECKS
    others: tuple[HitSet, ...] = OTHER_CHECKS

    @property
    def checks(self) -> tuple[BuiltinCheck, ...]:
        return (*self.detectors, *self.limits, *self.others)

    def builtin_ids(self) -> frozenset[str]:
        """Every hit id the checks report (webhook ids aside: see ``webhook.hit_ids``)."""
        return frozenset(h for c in self.checks for h in c.hits)

    def by_hit(self) -> dict[str, BuiltinCheck]:
        return {h: c for c in self.checks for h in c.hits}


CATALOGUE = Catalogue()
_BY_HIT = CATALOGUE.by_hit()
# The server's own failure (``server.decide``): not a check, but explain places it.
SERVER_INTERNAL_ERROR = "server.internalError"


def check_of(hit_id: str) -> BuiltinCheck | None:
    """The built-in check that reports ``hit_id`` (webhook and rule ids: None)."""
    return _BY_HIT.get(hit_id)


def phase_of(hit_id: str) -> str | None:
    """The phase a built-in (non-webhook) hit id comes from; None for ids the catalogue lacks."""
    check = _BY_HIT.get(hit_id)
    if check is not None:
        return check.phase
    return ENGINE if hit_id == SERVER_INTERNAL_ERROR else None


__all__ = [
    "CATALOGUE",
    "CEL",
    "CONTRACT",
    "DEFAULT_LOCATION",
    "DETECTORS",
    "ENGINE",
    "LIMITS",
    "LIMIT_CHECKS",
    "OFF",
    "ON",
    "OTHER_CHECKS",
    "PHASES",
    "REPLAY",
    "ROUTE",
    "RULE",
    "SERVER_INTERNAL_ERROR",
    "VULNERABILITY",
    "WEBHOOK",
    "BuiltinCheck",
    "Catalogue",
    "Check",
    "Detector",
    "HitSet",
    "Limit",
    "check_of",
    "phase_of",
    "webhook",
]
