"""Envoy's HTTP-mode ext_authz on the HTTP server: convert, decide, answer; never raises.

The HTTP door of ``grpc_service.AuthorizationServicer.serve``: the same decider (deadline,
replay claim, metrics), the same drain accounting (``active``/``last_started`` of the
servicer, so a drain waits for checks in either mode), the adapter pair in ``envoy.http_*``,
the same ``ext_authz.check`` span when tracing is on (``traced``).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from .._http import HttpIn, HttpOut
from ..context import RequestContext
from ..envoy.http_request import forwarded_request_to_context
from ..envoy.http_response import decision_to_http
from ..envoy.request import AdapterOptions
from ..outcome import outcome_encoder
from .grpc_service import AuthorizationServicer, Door
from .state import ServerState

#: Envoy's ``http_service.path_prefix`` in the shipped config: ``/ext_authz/api/x`` is the
#: check of ``/api/x``. The HTTP API's own paths never start with it.
AUTHZ_PREFIX = "/ext_authz"
TRANSPORT = "http_authz"


http_answer = outcome_encoder(decision_to_http)


class HttpAuthorization:
    """``__call__(request)`` → ``HttpOut``, or a coroutine of it when a replay claim is due."""

    def __init__(self, state: ServerState, activity: AuthorizationServicer) -> None:
        self._state = state
        options = AdapterOptions.from_config(state.config)

        def decode(request: HttpIn) -> RequestContext:
            request.path = request.path[len(AUTHZ_PREFIX) :] or "/"
            return forwarded_request_to_context(request, options)

        self.door: Door[HttpIn, HttpOut] = Door(decode, http_answer)
        self._activity = activity

    def __call__(self, request: HttpIn) -> HttpOut | Coroutine[Any, Any, HttpOut]:
        return self._activity.serve(request, self.door, TRANSPORT)

    async def traced(self, request: HttpIn) -> HttpOut:
        """The check inside an OpenTelemetry span (tracing on only): the gRPC check's name and
        attributes, its parent the trace context Envoy's ext_authz client put in the headers."""
        tracer = self._state.tracer
        assert tracer is not None  # chosen only with tracing on (``HttpApi``)
        started = tracer.start("ext_authz.check", request.headers, TRANSPORT)
        try:
            answer = self(request)
            return answer if isinstance(answer, HttpOut) else await answer
        finally:
            tracer.end(started)
