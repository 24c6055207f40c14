"""The ``envoy.service.auth.v3.Authorization/Check`` servicer: thin, and it never raises.

An RPC error makes Envoy drop our status, headers and body and fall back to
``status_on_error``, so every failure here is turned into a denial (see ``serve``). The
request bytes are parsed here rather than by grpcio, so even bytes that are not a
``CheckRequest`` get a deterministic 400 instead of an RPC error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from google.protobuf.message import DecodeError

from .._exceptions import InvalidContext
from ..context import Identity, RequestContext
from ..decider import Claim
from ..envoy.grpc_status import is_grpc
from ..envoy.request import AdapterOptions, check_request_to_context, parse_check_request
from ..envoy.response import decision_to_check_bytes
from ..outcome import Outcome, internal_error, outcome_encoder
from . import tracing
from .decide import server_decider
from .h2_server import Headers, Unary
from .state import ServerState

SERVICE_NAME = "envoy.service.auth.v3.Authorization"
log = logging.getLogger("extauthz.server")

R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Door(Generic[R, T]):
    """How one transport reads a check and writes its answer (``AuthorizationServicer.serve``).

    ``decode`` raises one of ``unreadable`` for a request it cannot turn into a context (a 400
    ``invalid_request``); anything of ``last_resort`` raised elsewhere is the internal-error
    denial, so even a bug in an encoder is an answer.
    """

    decode: Callable[[R], RequestContext]
    # (outcome, identity, grpc): ``grpc`` the checked request was gRPC (``envoy.grpc_status``)
    encode: Callable[[Outcome, Identity | None, bool], T]
    unreadable: tuple[type[Exception], ...] = (InvalidContext,)
    unreadable_reason: str = "unreadable request"  # when the exception has no text
    last_resort: type[BaseException] = Exception


# The ``CheckResponse`` bytes: for ALLOW no message is built (``decision_to_check_bytes``).
check_bytes = outcome_encoder(decision_to_check_bytes)


class AuthorizationServicer:
    """Converts, decides and answers; one instance per server."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self.decider = server_decider(state)
        options = AdapterOptions.from_config(state.config)
        self.door: Door[bytes, bytes] = Door(
            # parse_check_request: InvalidContext in our own words, never upb's (issue 24)
            lambda data: check_request_to_context(parse_check_request(data), options),
            check_bytes,
            (InvalidContext, DecodeError),
            "not a CheckRequest",
            BaseException,  # an RPC error would make Envoy drop our answer (status_on_error)
        )
        self.active = 0  # checks being decided now (the drain waits for quiet)
        self.last_started = 0.0  # time.monotonic() of the latest check
        # The in-flight gauge reads ``active`` when scraped: no gauge inc/dec per check.
        state.metrics.count_in_flight(lambda: self.active)

    async def check(self, request_bytes: bytes, context: grpc.aio.ServicerContext) -> bytes:
        answer = self.serve(request_bytes, self.door, "grpc")
        # Awaited only when it is a coroutine: a webhook delivery's replay claim.
        return answer if isinstance(answer, bytes) else await answer

    def respond(
        self, request_bytes: bytes, transport: str = "grpc"
    ) -> bytes | Coroutine[Any, Any, bytes]:
        """``CheckRequest`` bytes → ``CheckResponse`` bytes; never raises. Also served over
        HTTP (``POST /v1/check``, the client's HTTP transport): one path, same answers."""
        return self.serve(request_bytes, self.door, transport)

    def serve(self, request: R, door: Door[R, T], transport: str) -> T | Coroutine[Any, Any, T]:
        """decode -> decider -> encode for every check door; never raises.

        Hot path: conversion, decision and answer in this one call; a coroutine is returned
        only for a webhook delivery's replay claim (``Decider.begin``), so the HTTP server
        answers every other check without a task. Counts the check in ``active`` until answered.
        """
        self.active += 1
        self.last_started = time.monotonic()
        pending = False
        try:
            identity = None
            grpc = False
            try:
                ctx = door.decode(request)
            except door.unreadable as exc:
                outcome = self.decider.rejected(
                    str(exc) or door.unreadable_reason, transport, InvalidContext.code
                )
            else:
                identity = ctx.identity
                grpc = is_grpc(ctx.request.content_type)  # a denial then carries a gRPC status
                decided = self.decider.begin(ctx, transport)
                if isinstance(decided, Claim):
                    pending = True
                    return self._after_claim(decided, identity, door, grpc)
                outcome = decided
            return door.encode(outcome, identity, grpc)
        except door.last_resort:  # even a bug in the encoder is a denial
            return door.encode(internal_error(), None, False)
        finally:
            if not pending:
                self.active -= 1

    async def _after_claim(
        self, claim: Claim, identity: Identity | None, door: Door[R, T], grpc: bool
    ) -> T:
        try:
            return door.encode(await claim.outcome(), identity, grpc)
        except door.last_resort:
            return door.encode(internal_error(), None, False)
        finally:
            self.active -= 1

    async def traced_check(self, request_bytes: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """``check`` inside an OpenTelemetry span joined to Envoy's trace (tracing on only)."""
        return await self._traced(request_bytes, context.invocation_metadata())

    def h2_check(
        self, request_bytes: bytes, headers: Headers
    ) -> bytes | Coroutine[Any, Any, bytes]:
        """``Check`` on the h2 transport (``h2_server``): the one ``serve`` path, as ``check``."""
        return self.serve(request_bytes, self.door, "grpc")

    async def h2_traced_check(self, request_bytes: bytes, headers: Headers) -> bytes:
        metadata = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k[:1] != b":"]
        return await self._traced(request_bytes, metadata)

    def h2_methods(self) -> dict[str, Unary]:
        """The h2 transport's methods (``handler``'s twin): the plain check unless tracing."""
        check = self.h2_check if self._state.tracer is None else self.h2_traced_check
        return {f"/{SERVICE_NAME}/Check": check}

    async def _traced(self, request_bytes: bytes, metadata: Any) -> bytes:
        tracer = self._state.tracer
        assert tracer is not None  # registered only with tracing on (``handler``)
        carrier = tracing.carrier_from_metadata(metadata)
        if not carrier:  # no context on the call itself: the checked request's own headers
            try:
                headers = CheckRequest.FromString(request_bytes).attributes.request.http.headers
                carrier = dict(headers)
            except Exception:  # the check itself answers bad bytes with a 400
                carrier = {}
        started = tracer.start("ext_authz.check", carrier, "grpc")
        try:
            answer = self.serve(request_bytes, self.door, "grpc")
            return answer if isinstance(answer, bytes) else await answer
        finally:
            tracer.end(started)

    def handler(self) -> grpc.GenericRpcHandler:
        """A generic handler taking raw bytes (no grpcio-side deserialisation that could fail).

        With tracing off the plain ``check`` is registered: no span, no wrapper coroutine.
        """
        check = self.check if self._state.tracer is None else self.traced_check
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME, {"Check": grpc.unary_unary_rpc_method_handler(check)}
        )
