"""ASGI middleware (Starlette, FastAPI): remote (via the client) or embedded (in-process).

    app.add_middleware(RemoteASGIMiddleware, target="unix:///run/extauthz/pdp.sock")
    app.add_middleware(EmbeddedASGIMiddleware, policy="policies/demo.yaml")

The body is read (up to ``max_body_bytes`` for inspection, like Envoy's ``max_request_bytes``;
a longer body is inspected as partial) and replayed to the app unchanged. BLOCK → the
decision's status with ``{"error", "code": "POLICY_VIOLATION", ...}``; ALLOW/MONITOR → the
decision is in ``scope["state"]["contractshield_decision"]`` (``request.state`` in Starlette).
Override ``deny_response`` / ``unavailable_response`` to change what a denied client sees.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .._exceptions import ContractShieldError, InvalidContext
from ..client import AsyncContractShieldClient
from ..client._request import (
    CheckInput,
    IdentityInput,
    describe,
)
from ..decision import Decision
from . import _common
from ._common import ASGI_STATE_KEY, PARTIAL_BODY_HEADER, DenyResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
IdentityResolver = Callable[[Scope], IdentityInput]


class _Buffered:
    """Per-request state: the messages read so far, replayed to the app, then the rest."""

    __slots__ = ("body", "messages", "partial", "receive")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.messages: list[Message] = []
        self.body = b""
        self.partial = False

    async def read(self, limit: int) -> None:
        """Read until the body ends or more than ``limit`` bytes are in; like Envoy with
        ``allow_partial_message``, only the first ``limit`` bytes are inspected."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            self.messages.append(message)
            if message["type"] != "http.request":
                break  # http.disconnect: the app sees it too
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False) or size > limit:
                break  # the rest, if any, streams to the app straight from receive()
        body = b"".join(chunks)
        self.partial = len(body) > limit
        self.body = body[:limit] if self.partial else body

    async def replay(self) -> Message:
        if self.messages:
            return self.messages.pop(0)
        return await self.receive()


class _ASGIMiddleware(_common.Middleware):
    app: ASGIApp
    identity: IdentityResolver | None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        buffered = _Buffered(receive)
        await buffered.read(self.max_body_bytes)
        try:
            inp = self.describe(scope, buffered)
            decision = await self.decide(inp)
        except InvalidContext as exc:
            return await self._send(send, _common.invalid_request_response(exc))
        except ContractShieldError as exc:
            return await self._send(send, self.unavailable_response(exc))
        if not decision.allowed:
            return await self._send(send, self.deny_response(decision))
        scope.setdefault("state", {})[ASGI_STATE_KEY] = decision
        await self.app(scope, buffered.replay, send)

    def describe(self, scope: Scope, buffered: _Buffered) -> CheckInput:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        if buffered.partial:
            headers.append((PARTIAL_BODY_HEADER, "true"))
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope.get("path") or "/"
        query = scope.get("query_string", b"")
        if query:
            path = f"{path}?{query.decode('latin-1')}"
        client = scope.get("client")
        return describe(
            scope["method"],
            path,
            headers=headers,
            body=buffered.body or None,
            identity=self.identity(scope) if self.identity is not None else None,
            client_ip=client[0] if client else None,
            scheme=scope.get("scheme"),
        )

    async def decide(self, inp: CheckInput) -> Decision:
        raise NotImplementedError

    @staticmethod
    async def _send(send: Send, response: DenyResponse) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})


class RemoteASGIMiddleware(_common.Remote, _ASGIMiddleware):
    """Asks a PDP over gRPC with ``AsyncContractShieldClient`` (pass ``client`` or ``target``
    plus any client options)."""

    client_class = AsyncContractShieldClient
    client: AsyncContractShieldClient

    async def decide(self, inp: CheckInput) -> Decision:
        return await self.client.evaluate_input(inp)

    async def aclose(self) -> None:
        """Close the client's channel (call it from the app's lifespan shutdown)."""
        await self.client.aclose()


class EmbeddedASGIMiddleware(_common.Embedded, _ASGIMiddleware):
    """Decides in-process with the engine; ``policy`` is a path (hot-reloaded by default with
    ``PolicyHotReloader``), a ``CompiledPolicy`` or anything with ``current()``."""

    async def decide(self, inp: CheckInput) -> Decision:
        return await self.decider.decide_async(inp)
