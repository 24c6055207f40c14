"""Path traversal: a ``..`` segment or a NUL byte, plain, percent-encoded (up to three times)
or as overlong UTF-8; also ``..`` in the request path itself.

Servers and their file APIs read more than ``../`` as a step up, so each of these counts too:
IIS's ``%uXXXX`` escapes and literal ``0x2f``-style hex, Unicode look-alikes that some
normalisers fold into ``.``, ``/`` and ``\\`` (fullwidth forms, the one-dot leader, division
and fraction slashes, the set-minus backslash), a segment of three or more dots followed by a
slash (Windows drops a segment's trailing dots, and a filter that strips ``../`` once turns
``..././`` back into ``../``), Tomcat's path parameter on the dots (``..;x/``), and ``..``
before the replacement characters that raw overlong UTF-8 bytes decode to, or a segment of
them alone (``..\xc0\xaf``, ``\xc0\xae\xc0\xae/``: the old IIS "Unicode" traversal).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from ._kinds import Detector

# ``..`` as a whole segment, with Tomcat's ``;param`` on it; three or more dots before a slash.
_TRAVERSAL = re.compile(
    r"(?:^|[/\\\ufffd])(?:\.\.(?:;[^/\\]{0,64})?(?:[/\\]|\ufffd{1,3}|$)|\.{3,256}[/\\])"
    r"|(?:^|[/\\])\ufffd{2,8}[/\\]"
)
# Percent-escapes that may decode to a dot, a slash or a NUL: ASCII, overlong UTF-8, IIS's
# %uXXXX, and the UTF-8 lead bytes of the look-alikes below (E2 80-88 .., EF B9/BC ..).
_ENCODED_DOTS = re.compile(
    r"%(?:25)*2e|%(?:25)*2f|%(?:25)*5c|%(?:25)*00|%c0%ae|%c0%af|%c1%9c|%u[0-9a-f]{4}"
    r"|%(?:25)*e2%(?:25)*8[0-8]|%(?:25)*ef%(?:25)*b[9c]",
    re.I,
)
_OVERLONG = re.compile(r"%c0%ae|%c0%af|%c1%9c", re.I)
_PERCENT_U = re.compile(r"%u([0-9a-f]{4})", re.I)
_HEX = re.compile(r"0x(?:2e|2f|5c)", re.I)
_HEX_CHARS = {"0x2e": ".", "0x2f": "/", "0x5c": "\\"}
# Code points that Unicode normalisers (NFKC, best-fit mappings) read as a dot or a slash.
_LOOKALIKES = str.maketrans(
    {
        "\uff0e": ".", "\u2024": ".", "\ufe52": ".",  # fullwidth, one-dot leader, small
        "\uff0f": "/", "\u2215": "/", "\u2044": "/",  # fullwidth, division, fraction slash
        "\uff3c": "\\", "\u2216": "\\", "\ufe68": "\\",  # fullwidth, set minus, small reverse
    }
)  # fmt: skip
_LOOKALIKE_CHARS = "\uff0e\u2024\ufe52\uff0f\u2215\u2044\uff3c\u2216\ufe68"


def traversal_reason(value: str) -> str | None:
    if "\x00" in value:
        return "NUL byte"
    if ".." in value and _TRAVERSAL.search(value):
        return "'..' path segment"
    if "%" in value and _ENCODED_DOTS.search(value):
        decoded = value
        for _ in range(3):  # bounded: at most triple encoding is unwrapped
            decoded = _unescape(decoded)
            if "\x00" in decoded:
                return "encoded NUL byte"
            if _TRAVERSAL.search(decoded) or _TRAVERSAL.search(_folded(decoded)):
                return "percent-encoded '..' path segment"
            if "%" not in decoded:
                break
        if _OVERLONG.search(value):
            return "overlong UTF-8 dot or slash"
    if _TRAVERSAL.search(_folded(value)):
        return "'..' path segment in hex or look-alike characters"
    return None


def _unescape(text: str) -> str:
    """One layer of percent-decoding, IIS's ``%uXXXX`` escapes included."""
    if "%u" in text or "%U" in text:
        text = _PERCENT_U.sub(lambda m: chr(int(m.group(1), 16)), text)
    return unquote(text, errors="replace")


def _folded(text: str) -> str:
    """``text`` with literal hex escapes and look-alike dots and slashes as ASCII."""
    if "0x" in text or "0X" in text:
        text = _HEX.sub(lambda m: _HEX_CHARS[m.group(0).lower()], text)
    if any(c in text for c in _LOOKALIKE_CHARS):
        text = text.translate(_LOOKALIKES)
    return text


EXPLAIN = "a '..' segment or NUL byte that could walk a file path out of its directory"
TRIGGERS = ("\x00", "..", "%", "0x", "0X", "\ufffd\ufffd", *_LOOKALIKE_CHARS)
CHECK = Detector("pathTraversal", "vulnerability.pathTraversal", True, EXPLAIN,
                 strings=traversal_reason, string_triggers=TRIGGERS,
                 path_reason="request path: '..' path segment")  # fmt: skip
