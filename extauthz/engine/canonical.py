"""Canonical request paths: the one form routes are matched on.

Percent-escapes are decoded, dot segments removed, duplicate slashes collapsed and the query
split off. Encodings that different servers read differently (``%2F``, ``%5C``, ``%00``,
double encoding, overlong or invalid UTF-8, backslashes, control characters) cannot be
canonicalised safely: they are reported as ``ambiguous`` so the pipeline raises a
``request.path.ambiguous`` hit instead of letting them slip past a route.

A ``;`` in the path (raw or ``%3B``) is flagged (``semicolon``): Tomcat, Jetty and Spring drop
a segment's ``;...`` (path parameters, ``;jsessionid=``), so ``/api/users/;x=1`` is their
``/api/users/`` while a template here would capture ``;x=1`` as the id; other servers keep it.
No reading is safe for every upstream, so the pipeline refuses it as ``request.path.ambiguous``
(``SEMICOLON``), except in a segment an OpenAPI ``style: matrix`` path parameter of the matched
operation captures whole, where the upstream declared that reading and the contract checks it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DOUBLE = re.compile(r"%25[0-9A-Fa-f]{2}")
_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_SLASHES = re.compile(r"/{2,}")


@dataclass(frozen=True, slots=True)
class CanonicalPath:
    path: str
    query: str = ""
    ambiguous: str | None = None  # why the raw path cannot be read one way only
    traversal: bool = False  # the raw path carried ``..`` segments
    semicolon: bool = False  # a ';' (raw or %3B): a path parameter to some servers


#: Why a ``;`` in the path is refused (``request.path.ambiguous``'s message).
SEMICOLON = (
    "';' in the path (a path parameter: Tomcat and Spring drop ';...' from a segment, other "
    "servers keep it)"
)


_CACHE_MAX_LEN = 256  # only short paths are cached: bounded memory whatever the traffic


def canonicalize(raw: str) -> CanonicalPath:
    """Return the canonical form of a raw request path (bounded, linear time)."""
    if len(raw) <= _CACHE_MAX_LEN:
        return _canonicalize_cached(raw)
    return _canonicalize(raw)


def _canonicalize(raw: str) -> CanonicalPath:
    path, _, query = raw.partition("?")
    path = path.partition("#")[0]
    if (
        "%" not in path
        and ";" not in path
        and "\\" not in path
        and "//" not in path
        and "/." not in path
        and path.startswith("/")
        and not _CTRL.search(path)
    ):
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
        return CanonicalPath(path, query)
    return _slow(path, query)


# Pure function of a short string: real traffic repeats paths, so most lookups are cache hits.
_canonicalize_cached = lru_cache(maxsize=4096)(_canonicalize)


def _slow(path: str, query: str) -> CanonicalPath:
    ambiguous: str | None = None
    if not path.startswith("/"):
        ambiguous = "path does not start with '/'"
        path = "/" + path
    if "%" in path:
        if _BAD_PCT.search(path):
            ambiguous = ambiguous or "invalid percent-encoding"
        if _DOUBLE.search(path):
            ambiguous = ambiguous or "double percent-encoding"
        escapes = {m.group(1).upper() for m in _PCT.finditer(path)}
        if "2F" in escapes:
            ambiguous = ambiguous or "encoded slash (%2F)"
        if "5C" in escapes:
            ambiguous = ambiguous or "encoded backslash (%5C)"
        if any(int(e, 16) < 0x20 or e == "7F" for e in escapes):
            ambiguous = ambiguous or "encoded control character"
        raw_bytes = b""
        try:
            raw_bytes = _decode_bytes(path)
            path = raw_bytes.decode("utf-8")
        except UnicodeDecodeError:
            ambiguous = ambiguous or "invalid or overlong UTF-8 in percent-encoding"
            path = raw_bytes.decode("utf-8", "replace")
    if "\\" in path:
        ambiguous = ambiguous or "backslash in path"
        path = path.replace("\\", "/")
    if _CTRL.search(path):
        ambiguous = ambiguous or "control character in path"
    semicolon = ";" in path
    path = _SLASHES.sub("/", path)
    out: list[str] = []
    traversal = False
    for seg in path.split("/")[1:]:
        if seg == "..":
            traversal = True
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    canonical = "/" + "/".join(out)
    if len(canonical) > 1 and canonical.endswith("/"):
        canonical = canonical.rstrip("/") or "/"
    return CanonicalPath(canonical, query, ambiguous, traversal, semicolon)


def _decode_bytes(path: str) -> bytes:
    """Percent-decode to bytes, leaving literal characters in their UTF-8 form."""
    out = bytearray()
    pos = 0
    for m in _PCT.finditer(path):
        out += path[pos : m.start()].encode("utf-8", "surrogatepass")
        out.append(int(m.group(1), 16))
        pos = m.end()
    out += path[pos:].encode("utf-8", "surrogatepass")
    return bytes(out)
