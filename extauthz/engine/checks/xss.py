"""Cross-site scripting: libinjection's HTML5 tokenizer (C, linear time). No gate: it runs on
every string it covers. Opt-in."""

from __future__ import annotations

from . import _libinjection
from ._kinds import Detector


def xss_reason(value: str) -> str | None:
    """libinjection's HTML5 tokenizer, run in each context a value can land in."""
    return "cross-site scripting (libinjection)" if _libinjection.is_xss(value) else None


EXPLAIN = "a string that would run script if an HTML page echoed it"
CHECK = Detector(
    "xss",
    "vulnerability.xss",
    False,
    EXPLAIN,
    strings=xss_reason,
    unavailable=_libinjection.UNAVAILABLE,
)
