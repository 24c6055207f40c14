"""The ``envoy.service.auth.v3.Authorization/Check`` servicer: thin, and it never raises.

An RPC error makes Envoy drop our status, headers and body and fall back to
``status_on_error``, so every failure here is turned into a denial (see ``decide_now``). The
request bytes are parsed here rather than by grpcio, so even bytes that are not a
``CheckRequest`` get a deterministic 400 instead of an RPC error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from typing import Any

import grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from google.protobuf.message import DecodeError

from .._exceptions import InvalidContext
from ..context import Identity
from ..envoy.grpc_status import is_grpc
from ..envoy.request import AdapterOptions, check_request_to_context
from ..envoy.response import decision_to_check_bytes, decision_to_check_response
from . import tracing
from .decide import Outcome, decide_now, internal_error, invalid_request, observe_rejected
from .state import ServerState

SERVICE_NAME = "envoy.service.auth.v3.Authorization"
log = logging.getLogger("extauthz.server")


class AuthorizationServicer:
    """Converts, decides and answers; one instance per server."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._options = AdapterOptions.from_config(state.config)
        self.active = 0  # checks being decided now (the drain waits for quiet)
        self.last_started = 0.0  # time.monotonic() of the latest check
        # The in-flight gauge reads ``active`` when scraped: no gauge inc/dec per check.
        state.metrics.count_in_flight(lambda: self.active)

    async def check(self, request_bytes: bytes, context: Any) -> bytes:
        answer = self.respond(request_bytes)
        # Awaited only when it is a coroutine: a webhook delivery's replay claim.
        return answer if isinstance(answer, bytes) else await answer

    def respond(
        self, request_bytes: bytes, transport: str = "grpc"
    ) -> bytes | Coroutine[Any, Any, bytes]:
        """``CheckRequest`` bytes → ``CheckResponse`` bytes; never raises. Also served over
        HTTP (``POST /v1/check``, the client's HTTP transport): one path, same answers.

        Hot path: conversion, decision and answer in this one call; a coroutine is returned
        only for a webhook delivery's replay claim (see ``decide_now``).
        """
        self.active += 1
        self.last_started = time.monotonic()
        pending = False
        try:
            identity = None
            grpc = False
            try:
                req = CheckRequest.FromString(request_bytes)
                ctx = check_request_to_context(req, self._options)
            except (InvalidContext, DecodeError) as exc:
                self._state.metrics.observe_error(InvalidContext.code)
                outcome: Outcome = observe_rejected(
                    self._state, invalid_request(str(exc) or "not a CheckRequest"), transport
                )
            else:
                identity = ctx.identity
                grpc = is_grpc(ctx.request.content_type)  # a denial then carries a gRPC status
                decided = decide_now(self._state, ctx, transport)
                if not isinstance(decided, Outcome):
                    pending = True
                    return self._after_claim(decided, identity, grpc)
                outcome = decided
            return self._answer(outcome, identity, grpc)
        except BaseException:  # last resort: even a bug in the response builder is a denial
            return self._last_resort()
        finally:
            if not pending:
                self.active -= 1

    async def _after_claim(
        self, decided: Coroutine[Any, Any, Outcome], identity: Identity | None, grpc: bool
    ) -> bytes:
        try:
            return self._answer(await decided, identity, grpc)
        except BaseException:
            return self._last_resort()
        finally:
            self.active -= 1

    @staticmethod
    def _answer(outcome: Outcome, identity: Identity | None, grpc: bool = False) -> bytes:
        # The answer's bytes directly: for ALLOW no CheckResponse message is built.
        return decision_to_check_bytes(
            outcome.decision,
            identity,
            error_code=outcome.error_code,
            cacheable=outcome.cacheable,
            grpc=grpc,
        )

    @staticmethod
    def _last_resort() -> bytes:
        outcome = internal_error()
        return decision_to_check_response(
            outcome.decision, error_code=outcome.error_code
        ).SerializeToString()

    async def traced_check(self, request_bytes: bytes, context: Any) -> bytes:
        """``check`` inside an OpenTelemetry span joined to Envoy's trace (tracing on only)."""
        tracer = self._state.tracer
        carrier = tracing.carrier_from_metadata(context.invocation_metadata())
        if not carrier:  # no context on the call itself: the checked request's own headers
            try:
                headers = CheckRequest.FromString(request_bytes).attributes.request.http.headers
                carrier = dict(headers)
            except Exception:  # the check itself answers bad bytes with a 400
                carrier = {}
        started = tracer.start("ext_authz.check", carrier, "grpc")
        try:
            return await self.check(request_bytes, context)
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
