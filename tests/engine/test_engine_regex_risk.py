"""Schema regexes that can backtrack catastrophically are refused at load (D7)."""

from __future__ import annotations

import re
import time

import pytest

from extauthz.engine.contract import SchemaProblem, check_schema
from extauthz.engine.regex_risk import pattern_risk

CATASTROPHIC = [
    r"^(a+)+$",
    r"^(a|a)*$",
    r"^([a-z0-9]+)*@x$",
    r"(a*)*",
    r"^(a+b?)+$",
    r"((ab)*)*c",
    r"^(\d+\s?)+$",
    r"(,(a|a))*",
    r"^(x+|y)*$",
    r"(.*a){10}",
    r"(?i)^([A-Z]+a)*$",
]
SAFE = [
    r"^[A-Z0-9]{4}(-[A-Z0-9]{4}){3}$",
    r"^\d+(\.\d+)*$",
    r"(\s*,\s*[a-z]+)*",
    r"^(foo|bar)+$",
    r"^[^@\s]+@[^@\s]+$",
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}$",
    r"^(a+)++$",
    r"^(?>a+)+$",
    r"^[a-z]+(-[a-z]+)*$",
    r"^(a|b)*$",
    r"^(\w|\d)+$",
    r"^(https?)://",
    r"^(?:[a-z0-9-]+\.)+[a-z]{2,}$",
    r"^x-",
]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_patterns_are_refused(pattern: str) -> None:
    reason = pattern_risk(pattern)
    assert reason is not None and "exponential" in reason and "possessive" in reason


@pytest.mark.parametrize("pattern", SAFE)
def test_safe_patterns_are_accepted(pattern: str) -> None:
    assert pattern_risk(pattern) is None
    t0 = time.perf_counter()
    re.search(pattern, "a" * 5000 + "!")
    assert time.perf_counter() - t0 < 0.5  # and they really are linear-ish


def test_invalid_regex_is_reported() -> None:
    assert "invalid regular expression" in (pattern_risk("(unclosed") or "")


def test_schema_check_looks_at_pattern_and_pattern_properties_everywhere() -> None:
    with pytest.raises(SchemaProblem, match="exponential"):
        check_schema({"properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}})
    with pytest.raises(SchemaProblem, match="exponential"):
        check_schema({"patternProperties": {"^(a|a)*$": {}}})
    with pytest.raises(SchemaProblem, match="exponential"):
        check_schema({"$defs": {"x": {"propertyNames": {"pattern": "^([a-z]+)*$"}}}})
    check_schema({"properties": {"pattern": {"type": "string", "pattern": "^[a-z]+$"}}})
