"""SQL injection: libinjection's SQL tokenizer (C, linear time; chosen over regex lists by
``bench/injection_bench.py``). No gate: it runs on every string it covers. Opt-in."""

from __future__ import annotations

from . import _libinjection
from ._kinds import Detector


def sqli_reason(value: str) -> str | None:
    """libinjection's SQL tokenizer: a fingerprint of the token stream (linear time, C)."""
    fingerprint = _libinjection.sql_fingerprint(value)
    if fingerprint is not None:
        return f"SQL injection (libinjection fingerprint {fingerprint!r})"
    return None


EXPLAIN = "a string whose SQL token stream matches a known injection fingerprint"
CHECK = Detector(
    "sqlInjection",
    "vulnerability.sqlInjection",
    False,
    EXPLAIN,
    strings=sqli_reason,
    unavailable=_libinjection.UNAVAILABLE,
)
