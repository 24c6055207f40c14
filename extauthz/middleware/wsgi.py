"""WSGI middleware (Flask, Django): remote (via the client) or embedded (in-process).

    app.wsgi_app = RemoteWSGIMiddleware(app.wsgi_app, target="unix:///run/extauthz/pdp.sock")
    app.wsgi_app = EmbeddedWSGIMiddleware(app.wsgi_app, policy="policies/demo.yaml")

The body is read (up to ``max_body_bytes`` for inspection; a longer body is inspected as
partial) and handed to the app unchanged through a replaying ``wsgi.input``. BLOCK → the
decision's status with ``{"error", "code": "POLICY_VIOLATION", ...}``; ALLOW/MONITOR → the
decision is in ``environ["contractshield.decision"]`` (``request.environ`` in Flask).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from .._exceptions import ContractShieldError, InvalidContext
from ..client import ContractShieldClient
from ..client._request import (
    CheckInput,
    IdentityInput,
    describe,
)
from ..decision import Decision
from . import _common
from ._common import PARTIAL_BODY_HEADER, WSGI_ENVIRON_KEY, DenyResponse

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
IdentityResolver = Callable[[Environ], IdentityInput]


class _ReplayInput(io.RawIOBase):
    """``wsgi.input`` that returns the bytes already read, then the rest of the stream."""

    def __init__(self, head: bytes, rest: Any, remaining: int | None) -> None:
        self._head = io.BytesIO(head)
        self._rest = rest
        self._remaining = remaining  # bytes left per content-length (None: read to EOF)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._head.readinto(buffer)
        if n:
            return n
        if self._rest is None or self._remaining == 0:
            return 0
        want = len(buffer) if self._remaining is None else min(len(buffer), self._remaining)
        data = self._rest.read(want)
        if self._remaining is not None:
            self._remaining -= len(data)
        buffer[: len(data)] = data
        return len(data)


def _read_body(environ: Environ, limit: int) -> tuple[bytes, bool]:
    """Read up to ``limit`` + 1 bytes; replace ``wsgi.input`` so the app sees every byte."""
    stream = environ.get("wsgi.input")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
    if stream is None or (length <= 0 and not chunked):
        return b"", False
    want = limit + 1 if chunked else min(length, limit + 1)
    head = stream.read(want)
    partial = len(head) > limit
    remaining = None if chunked else max(0, length - len(head))
    environ["wsgi.input"] = io.BufferedReader(_ReplayInput(head, stream, remaining))
    if not chunked:
        environ["CONTENT_LENGTH"] = str(length)
    return (head[:limit] if partial else head), partial


def _headers(environ: Environ) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out.append((key[5:].replace("_", "-").lower(), value))
    if environ.get("CONTENT_TYPE"):
        out.append(("content-type", environ["CONTENT_TYPE"]))
    if environ.get("CONTENT_LENGTH"):
        out.append(("content-length", environ["CONTENT_LENGTH"]))
    return out


class _WSGIMiddleware(_common.Middleware):
    app: WSGIApp
    identity: IdentityResolver | None

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        body, partial = _read_body(environ, self.max_body_bytes)
        try:
            inp = self.describe(environ, body, partial)
            decision = self.decide(inp)
        except InvalidContext as exc:
            return self._send(start_response, _common.invalid_request_response(exc))
        except ContractShieldError as exc:
            return self._send(start_response, self.unavailable_response(exc))
        if not decision.allowed:
            return self._send(start_response, self.deny_response(decision))
        environ[WSGI_ENVIRON_KEY] = decision
        return self.app(environ, start_response)

    def describe(self, environ: Environ, body: bytes, partial: bool) -> CheckInput:
        headers = _headers(environ)
        if partial:
            headers.append((PARTIAL_BODY_HEADER, "true"))
        # PEP 3333 decodes the path; RAW_URI / REQUEST_URI (gunicorn, werkzeug) keep it raw.
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw:
            path = raw
        else:
            path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/"
            if environ.get("QUERY_STRING"):
                path = f"{path}?{environ['QUERY_STRING']}"
        return describe(
            environ.get("REQUEST_METHOD", "GET"),
            path,
            headers=headers,
            body=body or None,
            identity=self.identity(environ) if self.identity is not None else None,
            client_ip=environ.get("REMOTE_ADDR") or None,
            scheme=environ.get("wsgi.url_scheme"),
        )

    def decide(self, inp: CheckInput) -> Decision:
        raise NotImplementedError

    @staticmethod
    def _send(start_response: StartResponse, response: DenyResponse) -> list[bytes]:
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = "Denied"
        headers = [*response.headers, ("content-length", str(len(response.body)))]
        start_response(f"{response.status} {phrase}", headers)
        return [response.body]


class RemoteWSGIMiddleware(_common.Remote, _WSGIMiddleware):
    """Asks a PDP over gRPC with ``ContractShieldClient`` (pass ``client`` or ``target`` plus
    any client options)."""

    client_class = ContractShieldClient
    client: ContractShieldClient

    def decide(self, inp: CheckInput) -> Decision:
        return self.client.evaluate_input(inp)

    def close(self) -> None:
        """Close the client's channel."""
        self.client.close()


class EmbeddedWSGIMiddleware(_common.Embedded, _WSGIMiddleware):
    """Decides in-process with the engine; ``policy`` is a path (hot-reloaded by default with
    ``PolicyHotReloader``), a ``CompiledPolicy`` or anything with ``current()``."""

    def decide(self, inp: CheckInput) -> Decision:
        return self.decider.decide(inp)
