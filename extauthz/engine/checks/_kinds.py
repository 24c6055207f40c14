"""The kinds of built-in check the catalogue holds, and the one interface they share.

``BuiltinCheck`` is what every entry declares (Authorino's evaluators: one small interface,
one file per kind): the policy names it, the section and JSON Schema fragment of its setting,
the hit ids it reports, the phase it runs in, its default and a line of explanation. The
kinds add what their phase needs: a ``Detector`` its string and key detectors and their
gates, a ``Limit`` its ``Limits`` attribute, a ``HitSet`` nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# The phases, in pipeline order (``explain`` lists them so), and the two a hit may also come
# from: the engine itself (an internal error) and a rule the catalogue does not know.
ROUTE = "route"
VULNERABILITY = "vulnerability"
LIMITS = "limits"
CONTRACT = "contract"
WEBHOOK = "webhook"
REPLAY = "replay"
CEL = "cel"
PHASES = (ROUTE, VULNERABILITY, LIMITS, CONTRACT, WEBHOOK, REPLAY, CEL)
ENGINE = "engine"
RULE = "rule"
# Where explain points for a phase's checks when the route does not configure them.
DEFAULT_LOCATION = {VULNERABILITY: "defaults.vulnerabilityChecks", LIMITS: "defaults.limits"}

StrDetect = Callable[[str], "str | None"]  # a string -> why it is an attack, or None
KeyDetect = Callable[[str, Any], "str | None"]  # an object key and its value -> why, or None
Schema = Mapping[str, Any]  # a JSON Schema fragment


class BuiltinCheck(Protocol):
    """A built-in check as the policy schema, the compiler, the rule types and explain see it."""

    @property
    def name(self) -> str: ...  # its key in the policy ("ssrfInternal"); "" if none names it

    @property
    def section(self) -> str: ...  # the route section that configures it ("vulnerability")

    @property
    def schema(self) -> Schema | None: ...  # the JSON Schema of its policy key, if it has one

    @property
    def hits(self) -> tuple[str, ...]: ...  # the ids it reports; no CEL rule may take one

    @property
    def phase(self) -> str: ...

    @property
    def default(self) -> object: ...  # on/off, a limit's value, an action

    @property
    def location(self) -> str | None: ...  # where explain points when no route configures it

    @property
    def explain(self) -> str: ...  # what one of its hits means, in a line


def attr_name(name: str) -> str:
    """A policy name's Python attribute (``ssrfInternal`` -> ``ssrf_internal``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True, slots=True)
class Check:
    """One vulnerability check's setting in a policy: on or off, and where it looks."""

    enabled: bool
    fields: tuple[str, ...] | None = None  # None: everywhere

    def covers(self, dotted: str) -> bool:
        if self.fields is None:
            return True
        if dotted in self.fields:
            return True
        for f in self.fields:
            if dotted == f or (dotted.startswith(f) and dotted[len(f)] == "."):
                return True
        return False


ON = Check(True)
OFF = Check(False)

_FIELDS: Schema = {
    "type": "array",
    "items": {"type": "string", "minLength": 1},
    "uniqueItems": True,
}
CHECK_SCHEMA: Schema = {
    "oneOf": [
        {"type": "boolean"},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {"enabled": {"type": "boolean"}, "fields": _FIELDS},
        },
    ]
}


class _OneHit:
    """A check with one hit id and a Python attribute named after it (``ssrf_internal``)."""

    __slots__ = ()
    name: str
    hit: str

    @property
    def hits(self) -> tuple[str, ...]:
        return (self.hit,)

    @property
    def attr(self) -> str:
        return attr_name(self.name)


@dataclass(frozen=True, slots=True)
class Detector(_OneHit):
    """A vulnerability check: detectors over the strings and/or the keys of the request.

    ``string_triggers``: the substrings ``strings`` needs to fire (it returns None for a value
    that holds none of them), so most strings skip it after one regex search; None: it runs
    on every string. ``named_strings`` replaces ``strings`` when the policy limits the check to
    fields (it runs on every string of those fields). ``path_reason``: the message when the
    canonical request path itself failed (``..`` segments).
    """

    name: str
    hit: str
    default: bool
    explain: str
    strings: StrDetect | None = None
    string_triggers: tuple[str, ...] | None = None
    named_strings: StrDetect | None = None
    keys: KeyDetect | None = None
    key_triggers: tuple[str, ...] = ()
    path_reason: str | None = None
    # Why it cannot run in this installation (an optional piece is missing), None when it can:
    # a policy that turns it on is refused at load, never run without it.
    unavailable: str | None = None
    section: str = VULNERABILITY
    schema: Schema = field(default_factory=lambda: CHECK_SCHEMA)  # shared, never changed
    phase: str = VULNERABILITY
    location: str | None = DEFAULT_LOCATION[VULNERABILITY]

    def __post_init__(self) -> None:
        # The walk runs key detectors only on keys holding a trigger: one without would never
        # run (strings have an ungated path; keys, almost all clean, do not).
        if self.keys is not None and not self.key_triggers:
            raise ValueError(f"{self.name}: a key detector needs its key_triggers")

    @property
    def initial(self) -> Check:
        """Its setting when no policy says otherwise."""
        return ON if self.default else OFF

    def string_detector(self, check: Check) -> StrDetect | None:
        """The string detector for ``check``'s setting (None: the check reads no strings)."""
        if self.named_strings is not None and check.fields is not None:
            return self.named_strings
        return self.strings

    def triggers(self) -> dict[Callable[..., str | None], tuple[str, ...]]:
        """Each gated detector function and what it needs to fire."""
        out: dict[Callable[..., str | None], tuple[str, ...]] = {}
        if self.strings is not None and self.string_triggers is not None:
            out[self.strings] = self.string_triggers
        if self.keys is not None:
            out[self.keys] = self.key_triggers
        return out


@dataclass(frozen=True, slots=True)
class Limit(_OneHit):
    """A size limit of the limits phase (one ``Limits`` attribute, one hit id)."""

    name: str
    hit: str
    default: int
    schema: Schema
    explain: str
    section: str = LIMITS
    phase: str = LIMITS
    location: str | None = DEFAULT_LOCATION[LIMITS]


@dataclass(frozen=True, slots=True)
class HitSet:
    """Hits a phase reports from its own logic (the route match, the contract, the engine)."""

    hits: tuple[str, ...]
    phase: str
    explain: str
    name: str = ""  # the policy names none of the pipeline's own hits
    section: str = ""
    schema: Schema | None = None
    default: object = None
    location: str | None = None

    @property
    def hit(self) -> str:
        """Its one hit id (for the sets that have one)."""
        (only,) = self.hits
        return only
