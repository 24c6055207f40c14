"""Type aliases shared across modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

JSON: TypeAlias = Any
JSONObject: TypeAlias = dict[str, Any]
Headers: TypeAlias = Mapping[str, str]
Action: TypeAlias = Literal["ALLOW", "BLOCK", "MONITOR"]
Severity: TypeAlias = Literal["low", "med", "high", "critical"]
RiskLevel: TypeAlias = Literal["none", "low", "med", "high", "critical"]
Mode: TypeAlias = Literal["monitor", "enforce"]
