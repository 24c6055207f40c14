"""Transport-neutral HTTP message shapes: what the HTTP server parses and what it writes.

Shared by the server machinery (``server.http_server``), the request handling
(``server.http_api``) and the Envoy HTTP-mode adapters (``envoy.http_*``), so none of them
depends on another's types; ``declared_length``, how all of them (and the engine's size
limit) read a ``content-length`` value; and ``query_pairs``/``query_of``, how the adapters and
``RequestContext.from_dict`` read a raw query string.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from ._frozen import frozen_dataclass


def declared_length(text: str | None) -> int | None:
    """A ``content-length`` value as a byte count, or None: ASCII digits only (``str.isdigit``
    is true for ``²``, which ``int`` refuses, and ``int`` reads other scripts' digits), and
    fewer than 20 of them (no real length)."""
    if text is not None and text.isascii() and text.isdigit() and len(text) < 20:
        return int(text)
    return None


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of a raw query string, percent-decoded, ``+`` read as a space,
    blank values kept (``?a`` is ``a=""``), in order."""
    return parse_qsl(raw_query, keep_blank_values=True)


def query_of(raw_query: str) -> dict[str, str]:
    """Query parameters of a raw query string; a repeated one comma-joined (both modes)."""
    out: dict[str, str] = {}
    for key, value in query_pairs(raw_query):
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


@dataclass(slots=True)
class HttpIn:
    """One parsed request: ``path`` without the query, header names lower-cased, repeats
    comma-joined (Envoy's convention, so adapters see one shape from every transport)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    peer: str | None = None


@frozen_dataclass  # one per answer: the cheaper frozen ``__init__`` (``_frozen``)
class HttpOut:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
