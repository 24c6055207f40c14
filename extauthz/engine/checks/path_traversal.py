"""Path traversal: a ``..`` segment or a NUL byte, plain, percent-encoded (up to three times)
or as overlong UTF-8; also ``..`` in the request path itself."""

from __future__ import annotations

import re
from urllib.parse import unquote

from ._kinds import Detector

_TRAVERSAL = re.compile(r"(?:^|[/\\])\.\.(?:[/\\]|$)")
_ENCODED_DOTS = re.compile(
    r"%(?:25)*2e|%(?:25)*2f|%(?:25)*5c|%(?:25)*00|%c0%ae|%c0%af|%c1%9c", re.I
)


def traversal_reason(value: str) -> str | None:
    if "\x00" in value:
        return "NUL byte"
    if ".." in value and _TRAVERSAL.search(value):
        return "'..' path segment"
    if "%" in value and _ENCODED_DOTS.search(value):
        decoded = value
        for _ in range(3):  # bounded: at most triple encoding is unwrapped
            decoded = unquote(decoded, errors="replace")
            if "\x00" in decoded:
                return "encoded NUL byte"
            if _TRAVERSAL.search(decoded):
                return "percent-encoded '..' path segment"
            if "%" not in decoded:
                break
        if re.search(r"%c0%ae|%c0%af|%c1%9c", value, re.I):
            return "overlong UTF-8 dot or slash"
    return None


EXPLAIN = "a '..' segment or NUL byte that could walk a file path out of its directory"
CHECK = Detector("pathTraversal", "vulnerability.pathTraversal", True, EXPLAIN,
                 strings=traversal_reason, string_triggers=("\x00", "..", "%"),
                 path_reason="request path: '..' path segment")  # fmt: skip
